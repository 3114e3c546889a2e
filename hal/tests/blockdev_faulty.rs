//! `FaultyBlockDevice`: volatile cache and power cuts, bit rot, injected failures, counters.

use ingot_hal::blockdev::{
    BlockDevice, BlockError, CrashPolicy, FaultKind, FaultRule, FaultyBlockDevice, FaultyConfig,
    FileBlockDevice, MemBlockDevice, NvmeStatus, OpSet, PowerRail, WriteFlags, power_cycle,
};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;
use std::time::Duration;

const BS: usize = 512;

fn mem(name: &str, blocks: u64) -> Arc<MemBlockDevice> {
    Arc::new(MemBlockDevice::new(name, BS as u32, blocks))
}

fn is_lost(r: Result<(), BlockError>) -> bool {
    matches!(r, Err(BlockError::DeviceLost { .. }))
}

fn sectors_equal(img: &[u8], sector: usize, count: usize, byte: u8) -> bool {
    img[sector * BS..(sector + count) * BS]
        .iter()
        .all(|&x| x == byte)
}

#[tokio::test]
async fn flushed_and_fua_data_always_survive_a_cut() {
    for seed in 0..100 {
        let m = mem("m", 32);
        let f = FaultyBlockDevice::new(m.clone());
        f.write(0, &[1u8; 4 * BS], WriteFlags::NONE).await.unwrap();
        f.flush().await.unwrap();
        f.write(8 * BS as u64, &[2u8; 4 * BS], WriteFlags::FUA)
            .await
            .unwrap();
        // Unflushed writes elsewhere, and over the flushed range, may land or not.
        f.write(16 * BS as u64, &[3u8; 4 * BS], WriteFlags::NONE)
            .await
            .unwrap();
        f.rail().cut_now();
        let report = f
            .recover(&mut ChaCha8Rng::seed_from_u64(seed))
            .await
            .unwrap();
        assert_eq!(report.pending_writes, 1);
        let img = m.snapshot();
        assert!(
            sectors_equal(&img, 0, 4, 1),
            "seed {seed}: flushed data lost"
        );
        assert!(sectors_equal(&img, 8, 4, 2), "seed {seed}: FUA data lost");
        for s in 16..20 {
            assert!(
                sectors_equal(&img, s, 1, 3) || sectors_equal(&img, s, 1, 0),
                "seed {seed}: sector {s} holds neither old nor new data"
            );
        }
    }
}

#[tokio::test]
async fn unflushed_writes_are_kept_dropped_or_torn() {
    let (mut kept, mut dropped, mut torn) = (0, 0, 0);
    for seed in 0..60 {
        let m = mem("m", 16);
        let f = FaultyBlockDevice::new(m.clone());
        f.write(0, &[9u8; 8 * BS], WriteFlags::NONE).await.unwrap();
        assert_eq!(f.pending_writes().await, 1);
        f.rail().cut_now();
        let r = f
            .recover(&mut ChaCha8Rng::seed_from_u64(seed))
            .await
            .unwrap();
        let img = m.snapshot();
        let landed = (0..8).filter(|&s| sectors_equal(&img, s, 1, 9)).count();
        let zero = (0..8).filter(|&s| sectors_equal(&img, s, 1, 0)).count();
        assert_eq!(
            landed + zero,
            8,
            "seed {seed}: a sector is neither old nor new"
        );
        assert_eq!(r.sectors_persisted as usize, landed);
        match landed {
            8 => {
                assert_eq!(r.kept, 1);
                kept += 1;
            }
            0 => {
                assert_eq!(r.dropped, 1);
                dropped += 1;
            }
            _ => {
                assert_eq!(r.torn, 1);
                torn += 1;
            }
        }
        assert_eq!(f.stats().crashes, 1);
    }
    assert!(
        kept > 0 && dropped > 0 && torn > 0,
        "{kept}/{dropped}/{torn}"
    );
}

#[tokio::test]
async fn recovery_is_reproducible_from_the_seed() {
    async fn run(seed: u64) -> Vec<u8> {
        let m = mem("m", 64);
        let f = FaultyBlockDevice::new(m.clone());
        for i in 0..16u8 {
            let off = u64::from(i % 7) * 4 * BS as u64;
            f.write(off, &[i + 1; 4 * BS], WriteFlags::NONE)
                .await
                .unwrap();
        }
        f.rail().cut_now();
        f.recover(&mut ChaCha8Rng::seed_from_u64(seed))
            .await
            .unwrap();
        m.snapshot()
    }
    assert_eq!(run(42).await, run(42).await);
    let distinct = (0..8).map(run).collect::<Vec<_>>();
    let mut images = Vec::new();
    for d in distinct {
        images.push(d.await);
    }
    images.dedup();
    assert!(
        images.len() > 1,
        "different seeds should give different crashes"
    );
}

#[tokio::test]
async fn one_cut_hits_three_devices_at_the_nth_op() {
    let rail = PowerRail::new();
    let mems: Vec<_> = (0..3).map(|i| mem(&format!("m{i}"), 32)).collect();
    let devs: Vec<_> = mems
        .iter()
        .map(|m| FaultyBlockDevice::on_rail(m.clone(), rail.clone()))
        .collect();
    rail.arm_after(7);
    let mut completed = 0u64;
    let mut failed_at = None;
    for op in 0..12u64 {
        let d = &devs[(op % 3) as usize];
        let r = if op % 4 == 3 {
            d.flush().await
        } else {
            d.write(
                (op * BS as u64) % (32 * BS as u64),
                &[op as u8 + 1; BS],
                WriteFlags::FUA,
            )
            .await
        };
        match r {
            Ok(()) => completed += 1,
            Err(BlockError::DeviceLost { reason, .. }) => {
                assert_eq!(reason, "power cut");
                failed_at.get_or_insert(op);
            }
            Err(e) => panic!("unexpected {e}"),
        }
    }
    assert_eq!(completed, 7);
    assert_eq!(failed_at, Some(7));
    assert!(rail.is_cut());
    assert_eq!(rail.ops(), 8, "ops after the cut are not admitted");
    let mut b = vec![0u8; BS];
    for d in &devs {
        assert!(is_lost(d.read(0, &mut b).await), "every device is dark");
    }
    let reports = power_cycle(
        &devs.iter().collect::<Vec<_>>(),
        &mut ChaCha8Rng::seed_from_u64(1),
    )
    .await
    .unwrap();
    assert_eq!(reports.len(), 3);
    assert!(!rail.is_cut());
    for d in &devs {
        d.read(0, &mut b).await.unwrap();
    }
    // The seven FUA writes / flushes that completed are on the media: ops 0,1,2,4,5,6 wrote.
    for op in [0u64, 1, 2, 4, 5, 6] {
        let img = mems[(op % 3) as usize].snapshot();
        assert!(sectors_equal(&img, op as usize, 1, op as u8 + 1), "op {op}");
    }
}

#[tokio::test]
async fn every_op_fails_after_a_cut_until_recovered_and_restored() {
    let m = mem("m", 16);
    let f = FaultyBlockDevice::new(m.clone());
    f.write(0, &[1u8; BS], WriteFlags::NONE).await.unwrap();
    f.rail().cut_now();
    let mut b = vec![0u8; BS];
    assert!(is_lost(f.read(0, &mut b).await));
    assert!(is_lost(f.write(0, &[2u8; BS], WriteFlags::NONE).await));
    assert!(is_lost(f.write(0, &[2u8; BS], WriteFlags::FUA).await));
    assert!(is_lost(f.flush().await));
    assert!(is_lost(f.deallocate(0, BS as u64).await));
    assert!(is_lost(f.write_zeroes(0, BS as u64).await));
    assert!(matches!(
        f.health().await,
        Err(BlockError::DeviceLost { .. })
    ));
    assert_eq!(f.stats().power_failures, 7);
    // Argument errors still win over power state.
    assert!(matches!(
        f.read(1, &mut b).await,
        Err(BlockError::Misaligned { .. })
    ));
    // Restoring power without settling the cache keeps the device dark.
    f.rail().restore();
    let e = f.read(0, &mut b).await.unwrap_err();
    assert!(e.to_string().contains("not recovered"), "{e}");
    f.recover(&mut ChaCha8Rng::seed_from_u64(0)).await.unwrap();
    f.read(0, &mut b).await.unwrap();
    assert!(b.iter().all(|&x| x == 1) || b.iter().all(|&x| x == 0));
    f.write(0, &[5u8; BS], WriteFlags::NONE).await.unwrap();
    f.flush().await.unwrap();
    assert!(sectors_equal(&m.snapshot(), 0, 1, 5));
}

#[tokio::test]
async fn a_write_in_flight_at_the_cut_may_or_may_not_land() {
    let mut outcomes = [false; 2];
    for seed in 0..40 {
        let m = mem("m", 8);
        let f = FaultyBlockDevice::new(m.clone());
        f.rail().arm_after(0);
        let r = f.write(0, &[4u8; BS], WriteFlags::FUA).await;
        assert!(is_lost(r), "the write that trips the cut fails");
        assert_eq!(f.pending_writes().await, 1);
        f.recover(&mut ChaCha8Rng::seed_from_u64(seed))
            .await
            .unwrap();
        let img = m.snapshot();
        if sectors_equal(&img, 0, 1, 4) {
            outcomes[1] = true;
        } else {
            assert!(sectors_equal(&img, 0, 1, 0));
            outcomes[0] = true;
        }
    }
    assert_eq!(outcomes, [true, true]);
}

#[tokio::test]
async fn crash_policies_keep_all_and_drop_all() {
    for (policy, byte) in [(CrashPolicy::KEEP_ALL, 6u8), (CrashPolicy::DROP_ALL, 0u8)] {
        let m = mem("m", 8);
        let f = FaultyBlockDevice::with_config(
            m.clone(),
            FaultyConfig {
                crash: policy,
                ..FaultyConfig::default()
            },
        );
        f.write(0, &[6u8; 4 * BS], WriteFlags::NONE).await.unwrap();
        f.write_zeroes(BS as u64, BS as u64).await.unwrap();
        f.rail().cut_now();
        let r = f.recover(&mut ChaCha8Rng::seed_from_u64(9)).await.unwrap();
        let img = m.snapshot();
        assert!(sectors_equal(&img, 0, 1, byte), "{policy:?}");
        assert!(sectors_equal(&img, 1, 1, 0), "{policy:?}");
        assert!(sectors_equal(&img, 2, 2, byte), "{policy:?}");
        assert_eq!(r.pending_writes, 2);
    }
}

#[tokio::test]
async fn bit_rot_is_silent_and_seeded() {
    let run = |seed| async move {
        let m = mem("m", 8);
        let f = FaultyBlockDevice::new(m.clone());
        f.write(0, &[0xa5u8; 4 * BS], WriteFlags::FUA)
            .await
            .unwrap();
        let bits = f.corrupt(BS as u64, 2 * BS as u64, seed).await.unwrap();
        let mut b = vec![0u8; 4 * BS];
        f.read(0, &mut b).await.unwrap();
        (bits, b, f.stats())
    };
    let (bits, b, stats) = run(3).await;
    assert!((2..=8).contains(&bits), "1..=4 bits per sector, got {bits}");
    let flipped: u32 = b.iter().map(|&x| (x ^ 0xa5).count_ones()).sum();
    assert_eq!(u64::from(flipped), bits);
    assert!(sectors_equal(&b, 0, 1, 0xa5) && sectors_equal(&b, 3, 1, 0xa5));
    assert!(!sectors_equal(&b, 1, 1, 0xa5) && !sectors_equal(&b, 2, 1, 0xa5));
    assert_eq!((stats.bits_flipped, stats.sectors_corrupted), (bits, 2));
    assert_eq!(run(3).await.1, b, "same seed, same damage");
    assert_ne!(run(4).await.1, b, "other seed, other damage");
}

#[tokio::test]
async fn bit_rot_under_a_cached_write_is_shadowed() {
    let m = mem("m", 8);
    let f = FaultyBlockDevice::new(m.clone());
    f.write(0, &[1u8; BS], WriteFlags::FUA).await.unwrap();
    f.write(0, &[2u8; BS], WriteFlags::NONE).await.unwrap();
    f.corrupt(0, BS as u64, 1).await.unwrap();
    let mut b = vec![0u8; BS];
    f.read(0, &mut b).await.unwrap();
    assert!(b.iter().all(|&x| x == 2));
    f.flush().await.unwrap();
    assert!(sectors_equal(&m.snapshot(), 0, 1, 2));
}

#[tokio::test]
async fn fail_after_n_with_each_error_kind() {
    let media = NvmeStatus {
        sct: 2,
        sc: 0x81,
        dnr: true,
    };
    for kind in [FaultKind::MediaError, FaultKind::Io, FaultKind::Timeout] {
        let f = FaultyBlockDevice::new(mem("m", 8));
        f.fail_after(3, kind);
        let mut b = vec![0u8; BS];
        f.write(0, &[1u8; BS], WriteFlags::NONE).await.unwrap();
        f.flush().await.unwrap();
        f.read(0, &mut b).await.unwrap();
        for _ in 0..3 {
            let e = f.read(0, &mut b).await.unwrap_err();
            match kind {
                FaultKind::MediaError => assert!(
                    matches!(e, BlockError::Nvme { status, op: "read", .. } if status == media),
                    "{e}"
                ),
                FaultKind::Io => assert!(matches!(e, BlockError::Io { .. }), "{e}"),
                FaultKind::Timeout => assert!(matches!(e, BlockError::Timeout { .. }), "{e}"),
                _ => unreachable!(),
            }
            assert!(e.to_string().contains("faulty:m"), "{e}");
        }
        assert!(f.flush().await.is_err());
        assert!(f.health().await.is_err());
        let s = f.stats();
        assert_eq!(s.injected_errors, 5);
        assert_eq!(
            (s.reads, s.writes, s.flushes, s.health_queries),
            (4, 1, 2, 1)
        );
    }
}

#[tokio::test]
async fn failures_confined_to_an_lba_range() {
    let f = FaultyBlockDevice::new(mem("m", 16));
    let id = f.fail_reads(4 * BS as u64, 2 * BS as u64, FaultKind::MediaError);
    f.fail_writes(10 * BS as u64, BS as u64, FaultKind::Io);
    let mut b = vec![0u8; 2 * BS];
    f.read(0, &mut b).await.unwrap();
    f.read(6 * BS as u64, &mut b).await.unwrap();
    let e = f.read(3 * BS as u64, &mut b).await.unwrap_err();
    assert!(
        matches!(e, BlockError::Nvme { offset, .. } if offset == 3 * BS as u64),
        "{e}"
    );
    f.write(4 * BS as u64, &[1u8; BS], WriteFlags::NONE)
        .await
        .unwrap();
    assert!(
        f.write(10 * BS as u64, &[1u8; BS], WriteFlags::FUA)
            .await
            .is_err()
    );
    assert!(f.write_zeroes(9 * BS as u64, 2 * BS as u64).await.is_err());
    assert!(f.deallocate(10 * BS as u64, BS as u64).await.is_err());
    f.write(11 * BS as u64, &[1u8; BS], WriteFlags::NONE)
        .await
        .unwrap();
    assert!(f.remove_rule(id));
    f.read(4 * BS as u64, &mut b).await.unwrap();
    f.clear_rules();
    f.write(10 * BS as u64, &[1u8; BS], WriteFlags::NONE)
        .await
        .unwrap();
    assert_eq!(f.stats().injected_errors, 4);
}

#[tokio::test]
async fn probabilistic_and_limited_rules() {
    let run = || async {
        let f = FaultyBlockDevice::with_config(
            mem("m", 8),
            FaultyConfig {
                seed: 77,
                ..FaultyConfig::default()
            },
        );
        f.add_rule(FaultRule::new(OpSet::READ, FaultKind::Io).probability(0.3));
        f.add_rule(FaultRule::new(OpSet::WRITE, FaultKind::Timeout).times(2));
        let mut b = vec![0u8; BS];
        let mut reads = Vec::new();
        for _ in 0..50 {
            reads.push(f.read(0, &mut b).await.is_ok());
        }
        let writes: Vec<bool> = {
            let mut v = Vec::new();
            for _ in 0..4 {
                v.push(f.write(0, &[0u8; BS], WriteFlags::NONE).await.is_ok());
            }
            v
        };
        (reads, writes)
    };
    let (reads, writes) = run().await;
    assert_eq!(writes, [false, false, true, true]);
    let failed = reads.iter().filter(|&&ok| !ok).count();
    assert!((5..=30).contains(&failed), "{failed} of 50 failed at p=0.3");
    assert_eq!(run().await.0, reads, "seeded");
}

#[tokio::test]
async fn remove_and_reinsert() {
    let f = FaultyBlockDevice::new(mem("m", 8));
    f.write(0, &[8u8; BS], WriteFlags::NONE).await.unwrap();
    f.remove();
    assert!(f.is_removed());
    let mut b = vec![0u8; BS];
    let e = f.read(0, &mut b).await.unwrap_err();
    assert!(
        matches!(&e, BlockError::DeviceLost { reason, .. } if reason == "removed"),
        "{e}"
    );
    assert!(is_lost(f.flush().await));
    f.reinsert();
    f.read(0, &mut b).await.unwrap();
    assert!(b.iter().all(|&x| x == 8), "cache survives a removal");
    assert_eq!(f.stats().removed_failures, 2);
}

#[tokio::test]
async fn injected_delay_holds_operations_back() {
    let f = FaultyBlockDevice::new(mem("m", 8));
    // An hour's delay cannot finish within the timeout, whatever the machine's speed.
    f.set_delay(Some(Duration::from_secs(3600)));
    let held = tokio::time::timeout(Duration::from_millis(20), f.flush()).await;
    assert!(held.is_err(), "the delayed flush completed");
    f.set_delay(None);
    f.flush().await.unwrap();
}

#[tokio::test]
async fn crash_over_a_file_device_persists_to_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.img");
    let file = Arc::new(FileBlockDevice::create(&path, 16 * BS as u64, BS as u32).unwrap());
    let f = FaultyBlockDevice::with_config(
        file,
        FaultyConfig {
            crash: CrashPolicy::DROP_ALL,
            ..FaultyConfig::default()
        },
    );
    f.write(0, &[1u8; 2 * BS], WriteFlags::NONE).await.unwrap();
    f.flush().await.unwrap();
    f.write(0, &[2u8; 2 * BS], WriteFlags::NONE).await.unwrap();
    f.rail().cut_now();
    f.recover(&mut ChaCha8Rng::seed_from_u64(0)).await.unwrap();
    drop(f);
    let reopened = FileBlockDevice::open(&path, BS as u32).unwrap();
    let mut b = vec![0u8; 2 * BS];
    reopened.read(0, &mut b).await.unwrap();
    assert!(b.iter().all(|&x| x == 1));
}

#[tokio::test]
async fn op_counters() {
    let f = FaultyBlockDevice::new(mem("m", 8));
    let mut b = vec![0u8; BS];
    f.write(0, &[1u8; BS], WriteFlags::NONE).await.unwrap();
    f.write(0, &[1u8; BS], WriteFlags::FUA).await.unwrap();
    f.read(0, &mut b).await.unwrap();
    f.flush().await.unwrap();
    f.deallocate(0, BS as u64).await.unwrap();
    f.write_zeroes(0, BS as u64).await.unwrap();
    f.health().await.unwrap();
    let s = f.stats();
    assert_eq!(
        (
            s.writes,
            s.fua_writes,
            s.reads,
            s.flushes,
            s.deallocates,
            s.write_zeroes,
            s.health_queries
        ),
        (2, 1, 1, 1, 1, 1, 1)
    );
    assert_eq!(s.injected_errors + s.power_failures + s.removed_failures, 0);
    assert_eq!(
        f.rail().ops(),
        5,
        "writes, flush, deallocate, write zeroes count on the rail"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_and_flushes_end_up_on_the_media() {
    let m = mem("m", 256);
    let f = Arc::new(FaultyBlockDevice::new(m.clone()));
    let mut tasks = Vec::new();
    for t in 0..8u8 {
        let f = Arc::clone(&f);
        tasks.push(tokio::spawn(async move {
            for i in 0..32u64 {
                let sector = u64::from(t) * 32 + i;
                let flags = if i % 5 == 0 {
                    WriteFlags::FUA
                } else {
                    WriteFlags::NONE
                };
                f.write(sector * BS as u64, &[t + 1; BS], flags)
                    .await
                    .unwrap();
                if i % 8 == 7 {
                    f.flush().await.unwrap();
                }
                let mut b = vec![0u8; BS];
                f.read(sector * BS as u64, &mut b).await.unwrap();
                assert!(b.iter().all(|&x| x == t + 1), "read-your-write");
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    f.flush().await.unwrap();
    assert_eq!(f.pending_writes().await, 0);
    let img = m.snapshot();
    for t in 0..8u8 {
        assert!(
            sectors_equal(&img, usize::from(t) * 32, 32, t + 1),
            "task {t}"
        );
    }
    assert_eq!(f.stats().writes, 256);
}

#[tokio::test]
async fn recover_with_power_on_crashes_one_device_alone() {
    let rail = PowerRail::new();
    let (ma, mb) = (mem("a", 8), mem("b", 8));
    let a = FaultyBlockDevice::with_config(
        ma.clone(),
        FaultyConfig {
            rail: Some(rail.clone()),
            crash: CrashPolicy::DROP_ALL,
            ..FaultyConfig::default()
        },
    );
    let b = FaultyBlockDevice::on_rail(mb.clone(), rail.clone());
    a.write(0, &[1u8; BS], WriteFlags::NONE).await.unwrap();
    b.write(0, &[2u8; BS], WriteFlags::NONE).await.unwrap();
    let r = a.recover(&mut ChaCha8Rng::seed_from_u64(0)).await.unwrap();
    assert_eq!(r.dropped, 1);
    assert!(!rail.is_cut());
    let mut buf = vec![0u8; BS];
    a.read(0, &mut buf).await.unwrap();
    assert!(buf.iter().all(|&x| x == 0), "a lost its cache");
    b.read(0, &mut buf).await.unwrap();
    assert!(buf.iter().all(|&x| x == 2), "b kept its cache");
}

#[tokio::test]
async fn lost_and_misdirected_writes_are_silent() {
    let m = mem("m", 16);
    let f = FaultyBlockDevice::new(m.clone());
    f.write(0, &[1u8; 16 * BS], WriteFlags::FUA).await.unwrap();
    f.lose_writes(2 * BS as u64, BS as u64);
    f.misdirect_writes(8 * BS as u64, BS as u64, -4);
    // Lost: reports success, stores nothing, not even in the cache.
    f.write(2 * BS as u64, &[2u8; BS], WriteFlags::NONE)
        .await
        .unwrap();
    // Misdirected: reports success, lands 4 blocks earlier, the target is untouched.
    f.write(8 * BS as u64, &[3u8; 2 * BS], WriteFlags::FUA)
        .await
        .unwrap();
    let mut b = vec![0u8; 16 * BS];
    f.read(0, &mut b).await.unwrap();
    assert!(sectors_equal(&b, 2, 1, 1), "lost write must not be visible");
    assert!(
        sectors_equal(&b, 4, 2, 3),
        "misdirected data lands 4 blocks away"
    );
    assert!(sectors_equal(&b, 8, 2, 1), "intended blocks untouched");
    assert!(
        sectors_equal(&m.snapshot(), 4, 2, 3),
        "FUA reached the media"
    );
    // Wrapping keeps the whole write on the device.
    f.clear_rules();
    f.misdirect_writes(0, BS as u64, -1);
    f.write(0, &[4u8; 2 * BS], WriteFlags::NONE).await.unwrap();
    f.read(0, &mut b).await.unwrap();
    assert!(
        sectors_equal(&b, 14, 2, 4),
        "wrapped to the last two blocks"
    );
    let s = f.stats();
    assert_eq!(
        (s.lost_writes, s.misdirected_writes, s.injected_errors),
        (1, 2, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cut_during_concurrent_io_keeps_every_completed_fua_write() {
    let rail = PowerRail::new();
    let mems: Vec<_> = (0..3).map(|i| mem(&format!("m{i}"), 64)).collect();
    let devs: Vec<Arc<FaultyBlockDevice>> = mems
        .iter()
        .map(|m| Arc::new(FaultyBlockDevice::on_rail(m.clone(), rail.clone())))
        .collect();
    rail.arm_after(60);
    let mut tasks = Vec::new();
    for t in 0..6usize {
        let d = Arc::clone(&devs[t % 3]);
        tasks.push(tokio::spawn(async move {
            // Each task owns sectors t/3*32 .. +32 of its device and writes each once.
            let mut outcome = Vec::new();
            for i in 0..32usize {
                let sector = (t / 3) * 32 + i;
                let fua = i % 2 == 0;
                let flags = if fua {
                    WriteFlags::FUA
                } else {
                    WriteFlags::NONE
                };
                let byte = (t * 32 + i + 1) as u8;
                let ok = d
                    .write((sector * BS) as u64, &[byte; BS], flags)
                    .await
                    .is_ok();
                outcome.push((sector, byte, fua && ok));
                if !ok {
                    break;
                }
            }
            outcome
        }));
    }
    let mut outcomes = Vec::new();
    for (t, task) in tasks.into_iter().enumerate() {
        outcomes.push((t % 3, task.await.unwrap()));
    }
    assert!(
        rail.is_cut(),
        "192 writes cannot finish under a cut armed at 60"
    );
    let refs: Vec<&FaultyBlockDevice> = devs.iter().map(|d| d.as_ref()).collect();
    power_cycle(&refs, &mut ChaCha8Rng::seed_from_u64(5))
        .await
        .unwrap();
    let images: Vec<Vec<u8>> = mems.iter().map(|m| m.snapshot()).collect();
    let mut durable = 0;
    for (dev, outcome) in outcomes {
        for (sector, byte, durable_ok) in outcome {
            let img = &images[dev];
            if durable_ok {
                durable += 1;
                assert!(
                    sectors_equal(img, sector, 1, byte),
                    "completed FUA write lost"
                );
            } else {
                assert!(
                    sectors_equal(img, sector, 1, byte) || sectors_equal(img, sector, 1, 0),
                    "sector {sector} of device {dev} holds foreign data"
                );
            }
        }
    }
    assert!(durable > 0);
}
