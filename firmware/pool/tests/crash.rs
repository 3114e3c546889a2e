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
use ingot_hal::blockdev::BlockDevice;
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

async fn one_crash(seed: u64) {
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
    // Small dirty limit: some commits happen inside apply, not only on sync.
    cfg.tunables.dirty_limit_bytes = if seed % 3 == 0 { 64 << 10 } else { 64 << 20 };
    let pool = Pool::create(as_dyn(&devs), cfg).await.expect("create");
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
