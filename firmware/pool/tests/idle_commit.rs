//! The idle commit (`Tunables::idle_commit`, `engine/idle.rs`) through the public API, on
//! tokio's paused clock: a txg commits once changes stop for the idle interval, never
//! while they keep coming, and not at all when it is zero; what it committed survives a
//! power cut.

mod common;

use bytes::Bytes;
use common::{CrashDisk, Power, rng};
use ingot_hal::blockdev::{BlockDevice, MemBlockDevice};
use ingot_pool::engine::{ImportOptions, Pool, PoolConfig, PoolLayout};
use ingot_pool::store::{ObjectStore, Op};
use std::sync::Arc;
use std::time::Duration;

const IDLE: Duration = Duration::from_millis(200);

fn cfg(idle: Duration) -> PoolConfig {
    let mut c = PoolConfig::new("tank", PoolLayout::Raidz1);
    c.record_size = 16 * 1024;
    // The timer never fires during a test: every commit seen is an idle commit.
    c.tunables.txg_interval = Duration::from_secs(3600);
    c.tunables.idle_commit = idle;
    c.kdf = ingot_pool::crypto::KdfParams::FAST_INSECURE;
    c
}

fn mem(n: usize) -> Vec<Arc<dyn BlockDevice>> {
    (0..n)
        .map(|i| Arc::new(MemBlockDevice::new(format!("m{i}"), 4096, 4096)) as Arc<dyn BlockDevice>)
        .collect()
}

fn write(id: u64, offset: u64, len: usize, fill: u8) -> Op {
    Op::Write {
        id,
        offset,
        data: Bytes::from(vec![fill; len]),
    }
}

/// Wait (on the paused clock, bounded far below the txg interval) for a commit past `txg`.
async fn committed_past(pool: &Pool, txg: u64) -> bool {
    for _ in 0..100 {
        if pool.status().txg > txg {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

#[tokio::test(start_paused = true)]
async fn a_burst_of_changes_commits_once_they_stop() {
    let pool = Pool::create(mem(3), cfg(IDLE)).await.unwrap();
    let t0 = pool.status().txg;
    pool.apply(vec![Op::Create { id: 64 }]).await.unwrap();
    for k in 0..20u64 {
        pool.apply(vec![write(64, k * 3000, 3000, k as u8 + 1)])
            .await
            .unwrap();
    }
    assert!(committed_past(&pool, t0).await, "no idle commit");
    let t1 = pool.status().txg;
    // Nothing changed since: no further commits, however long.
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(pool.status().txg, t1);
}

#[tokio::test(start_paused = true)]
async fn a_steady_stream_of_changes_gets_no_idle_commit() {
    let pool = Pool::create(mem(3), cfg(IDLE)).await.unwrap();
    pool.apply(vec![Op::Create { id: 64 }]).await.unwrap();
    assert!(committed_past(&pool, 1).await);
    let t0 = pool.status().txg;
    // A change every 100 ms (half the idle interval) for 10 s.
    for k in 0..100u64 {
        pool.apply(vec![write(64, (k % 8) * 4096, 4096, k as u8)])
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(pool.status().txg, t0, "idle commit during a steady stream");
    }
    // The stream stops: one commit follows.
    assert!(committed_past(&pool, t0).await);
}

#[tokio::test(start_paused = true)]
async fn zero_disables_the_idle_commit() {
    let pool = Pool::create(mem(3), cfg(Duration::ZERO)).await.unwrap();
    let t0 = pool.status().txg;
    pool.apply(vec![Op::Create { id: 64 }, write(64, 0, 5000, 7)])
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(60)).await;
    assert_eq!(pool.status().txg, t0);
    assert!(pool.datapath_stats().dirty_records > 0);
}

#[tokio::test(start_paused = true)]
async fn what_an_idle_commit_wrote_survives_a_power_cut() {
    let power = Power::new();
    let disks: Vec<Arc<CrashDisk>> = (0..3)
        .map(|i| CrashDisk::new(&format!("c{i}"), 16 << 20, power.clone()))
        .collect();
    let devs: Vec<Arc<dyn BlockDevice>> = disks.iter().map(|d| d.clone() as _).collect();
    let pool = Pool::create(devs.clone(), cfg(IDLE)).await.unwrap();
    let t0 = pool.status().txg;
    // New files of a few KiB: their records are sealed in the background when idle, and
    // the idle commit links them.
    let mut ops = Vec::new();
    for id in 64..96u64 {
        ops.push(Op::Create { id });
        ops.push(write(id, 0, 3000 + id as usize, id as u8));
    }
    pool.apply(ops).await.unwrap();
    assert!(committed_past(&pool, t0).await);
    // Then a change the idle commit has not taken yet, and the power goes.
    pool.apply(vec![write(64, 0, 10, 0xee)]).await.unwrap();
    power.cut_after(0);
    let _ = pool.apply(vec![write(65, 0, 10, 0xee)]).await;
    drop(pool);
    let mut r = rng(11);
    let power2 = Power::new();
    let devs: Vec<Arc<dyn BlockDevice>> = disks
        .iter()
        .map(|d| {
            d.crash(&mut r);
            d.reboot(power2.clone()) as _
        })
        .collect();
    let p = Pool::import(
        devs,
        ImportOptions {
            tunables: cfg(Duration::ZERO).tunables,
            ..ImportOptions::default()
        },
    )
    .await
    .unwrap();
    for id in 64..96u64 {
        let len = 3000 + id as usize;
        assert_eq!(p.size(id).await.unwrap(), len as u64);
        let mut b = vec![0u8; len];
        p.read(id, 0, &mut b).await.unwrap();
        assert!(b.iter().all(|&x| x == id as u8), "object {id}");
    }
    assert!(p.verify_all().await.unwrap().errors.is_empty());
}
