//! Pool behaviour through the object-store API: model checks, import/export, labels.

mod common;

use bytes::Bytes;
use common::model::{self, Model};
use common::{CrashDisk, Power, rng};
use ingot_hal::blockdev::{BlockDevice, MemBlockDevice};
use ingot_pool::engine::{DeviceState, ImportOptions, Pool, PoolConfig, PoolLayout};
use ingot_pool::store::{ObjectStore, Op, StoreError};
use ingot_pool::{PoolCompression, PoolError};
use std::sync::Arc;
use std::time::Duration;

fn cfg(layout: PoolLayout) -> PoolConfig {
    let mut c = PoolConfig::new("tank", layout);
    c.record_size = 16 * 1024;
    c.tunables.txg_interval = Duration::from_secs(3600);
    c.tunables.idle_commit = Duration::ZERO;
    c.kdf = ingot_pool::crypto::KdfParams::FAST_INSECURE;
    c
}

fn mem(n: usize, mib: u64) -> Vec<Arc<dyn BlockDevice>> {
    (0..n)
        .map(|i| {
            Arc::new(MemBlockDevice::new(format!("m{i}"), 4096, mib * 256)) as Arc<dyn BlockDevice>
        })
        .collect()
}

#[tokio::test]
async fn model_check_with_reimports() {
    let devs = mem(2, 16);
    let mut pool = Pool::create(devs.clone(), cfg(PoolLayout::Mirror))
        .await
        .unwrap();
    let mut m = Model::new();
    let mut r = rng(7);
    for round in 0..6 {
        for _ in 0..40 {
            let ops = model::batch(&mut r, &m, 6, 50_000);
            pool.apply(ops.clone()).await.unwrap();
            for op in &ops {
                model::apply(&mut m, op);
            }
        }
        // Reads see applied (not yet committed) batches.
        assert_eq!(
            model::read_back(&pool, 6).await.unwrap(),
            m,
            "round {round} before sync"
        );
        if round % 2 == 0 {
            pool.sync().await.unwrap();
        }
        pool.export().await.unwrap();
        pool = Pool::import(devs.clone(), ImportOptions::default())
            .await
            .unwrap();
        assert_eq!(
            model::read_back(&pool, 6).await.unwrap(),
            m,
            "round {round} after import"
        );
        let rep = pool.verify_all().await.unwrap();
        assert!(rep.errors.is_empty(), "{:?}", rep.errors);
        assert!(rep.nodes >= 1);
    }
    let st = pool.status();
    assert_eq!(st.devices.len(), 2);
    assert!(st.devices.iter().all(|d| d.state == DeviceState::Online));
    serde_json::to_string(&st).unwrap();
}

#[tokio::test]
async fn raidz_layouts_model_check_and_degraded_import() {
    for (layout, n) in [
        (PoolLayout::Raidz1, 3),
        (PoolLayout::Raidz2, 4),
        (PoolLayout::Raid10, 4),
    ] {
        let devs = mem(n, 8);
        let pool = Pool::create(devs.clone(), cfg(layout)).await.unwrap();
        let mut m = Model::new();
        let mut r = rng(n as u64);
        for _ in 0..60 {
            let ops = model::batch(&mut r, &m, 4, 30_000);
            pool.apply(ops.clone()).await.unwrap();
            for op in &ops {
                model::apply(&mut m, op);
            }
        }
        pool.export().await.unwrap();
        // Drop the first device: still importable, same data.
        let p = Pool::import(devs[1..].to_vec(), ImportOptions::default())
            .await
            .unwrap();
        assert_eq!(model::read_back(&p, 4).await.unwrap(), m, "{layout:?}");
        assert_eq!(p.status().devices[0].state, DeviceState::Missing);
        drop(p);
        let p = Pool::import(devs.clone(), ImportOptions::default())
            .await
            .unwrap();
        assert_eq!(model::read_back(&p, 4).await.unwrap(), m, "{layout:?}");
        let rep = p.verify_all().await.unwrap();
        assert!(rep.errors.is_empty(), "{:?}", rep.errors);
    }
    // Too few devices is a clear error.
    let devs = mem(3, 8);
    Pool::create(devs.clone(), cfg(PoolLayout::Raidz1))
        .await
        .unwrap()
        .export()
        .await
        .unwrap();
    let e = Pool::import(devs[..1].to_vec(), ImportOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(e, PoolError::TooFewDevices { .. }), "{e}");
}

#[tokio::test]
async fn many_objects_deep_tree_and_delete_frees() {
    let devs = mem(1, 32);
    let pool = Pool::create(devs.clone(), cfg(PoolLayout::Stripe))
        .await
        .unwrap();
    let base = pool.stats().used_bytes;
    for chunk in 0..20u64 {
        let mut ops = Vec::new();
        for i in 0..100u64 {
            let id = 64 + chunk * 100 + i;
            ops.push(Op::Create { id });
            ops.push(Op::KvPut {
                id,
                key: Bytes::from(format!("name-{id}")),
                value: Bytes::from(vec![id as u8; 100]),
            });
            ops.push(Op::Write {
                id,
                offset: 0,
                data: Bytes::from(vec![1u8; 100]),
            });
        }
        pool.apply(ops).await.unwrap();
    }
    pool.sync().await.unwrap();
    assert_eq!(pool.stats().objects, 2000);
    for id in [64u64, 1000, 2063] {
        let v = pool
            .kv_get(id, format!("name-{id}").as_bytes())
            .await
            .unwrap();
        assert_eq!(v.unwrap().len(), 100);
    }
    let used = pool.stats().used_bytes;
    assert!(used > base);
    for chunk in 0..20u64 {
        let ops = (0..100u64)
            .map(|i| Op::Delete {
                id: 64 + chunk * 100 + i,
            })
            .collect();
        pool.apply(ops).await.unwrap();
    }
    for _ in 0..3 {
        pool.sync().await.unwrap();
        // force progress of deferred frees
        pool.apply(vec![Op::Create { id: 9000 }, Op::Delete { id: 9000 }])
            .await
            .unwrap();
    }
    pool.sync().await.unwrap();
    assert_eq!(pool.stats().objects, 0);
    let after = pool.stats().used_bytes;
    assert!(after < used / 4, "space not freed: {after} vs {used}");
    assert!(matches!(
        pool.size(64).await,
        Err(StoreError::NotFound { id: 64 })
    ));
}

#[tokio::test]
async fn errors_are_clean_and_batches_atomic() {
    let devs = mem(1, 8);
    let pool = Pool::create(devs, cfg(PoolLayout::Stripe)).await.unwrap();
    pool.apply(vec![Op::Create { id: 70 }]).await.unwrap();
    // Second op fails: the first must not be applied.
    let r = pool
        .apply(vec![
            Op::Write {
                id: 70,
                offset: 0,
                data: Bytes::from_static(b"hello"),
            },
            Op::Write {
                id: 71,
                offset: 0,
                data: Bytes::from_static(b"x"),
            },
        ])
        .await;
    assert!(matches!(r, Err(StoreError::NotFound { id: 71 })));
    assert_eq!(pool.size(70).await.unwrap(), 0);
    assert!(matches!(
        pool.apply(vec![Op::Create { id: 70 }]).await,
        Err(StoreError::Exists { id: 70 })
    ));
    assert!(matches!(
        pool.apply(vec![Op::SetAttr {
            id: 70,
            attr: Bytes::from(vec![0; 2000])
        }])
        .await,
        Err(StoreError::Invalid { .. })
    ));
    let a = pool.alloc_object_id().await.unwrap();
    let b = pool.alloc_object_id().await.unwrap();
    assert!(a >= 64 && b > a);
}

#[tokio::test]
async fn import_refuses_foreign_and_empty_devices() {
    let a = mem(1, 8);
    let b = mem(1, 8);
    let pa = Pool::create(a.clone(), cfg(PoolLayout::Stripe))
        .await
        .unwrap();
    pa.export().await.unwrap();
    let mut c2 = cfg(PoolLayout::Stripe);
    c2.name = "other".into();
    let pb = Pool::create(b.clone(), c2).await.unwrap();
    pb.export().await.unwrap();
    let blank = mem(1, 8);
    let e = Pool::import(blank, ImportOptions::default())
        .await
        .unwrap_err();
    assert!(matches!(e, PoolError::NotAPool { .. }), "{e}");
    let e = Pool::import(vec![a[0].clone(), b[0].clone()], ImportOptions::default())
        .await
        .unwrap_err();
    assert!(e.to_string().contains("belongs to pool"), "{e}");
    assert!(
        matches!(
            e,
            PoolError::ForeignDevice { .. } | PoolError::DeviceConflict { .. }
        ),
        "{e}"
    );
    // Majority wins: two devices of a mirror plus a stranger names the stranger.
    let m = mem(2, 8);
    let pm = Pool::create(m.clone(), cfg(PoolLayout::Mirror))
        .await
        .unwrap();
    pm.export().await.unwrap();
    let stranger: Arc<dyn BlockDevice> = Arc::new(MemBlockDevice::new("stranger", 4096, 2048));
    Pool::create(vec![stranger.clone()], cfg(PoolLayout::Stripe))
        .await
        .unwrap()
        .export()
        .await
        .unwrap();
    let e = Pool::import(
        vec![m[0].clone(), stranger, m[1].clone()],
        ImportOptions::default(),
    )
    .await
    .unwrap_err();
    match &e {
        PoolError::ForeignDevice { device, .. } => assert_eq!(device, "stranger", "{e}"),
        other => panic!("expected ForeignDevice, got {other}"),
    }
    let labels = Pool::read_labels(a[0].as_ref()).await;
    assert_eq!(labels.len(), 4);
    assert!(labels.iter().all(|l| l.is_ok()));
}

#[tokio::test]
async fn mirror_imports_with_a_missing_device_and_marks_stale() {
    let devs = mem(2, 8);
    let pool = Pool::create(devs.clone(), cfg(PoolLayout::Mirror))
        .await
        .unwrap();
    pool.apply(vec![
        Op::Create { id: 64 },
        Op::Write {
            id: 64,
            offset: 0,
            data: Bytes::from_static(b"abc"),
        },
    ])
    .await
    .unwrap();
    pool.export().await.unwrap();
    // Only device 1 present.
    let p1 = Pool::import(vec![devs[1].clone()], ImportOptions::default())
        .await
        .unwrap();
    let st = p1.status();
    assert_eq!(st.devices[0].state, DeviceState::Missing);
    let mut buf = [0u8; 3];
    p1.read(64, 0, &mut buf).await.unwrap();
    assert_eq!(&buf, b"abc");
    for i in 0..4u64 {
        p1.apply(vec![Op::Write {
            id: 64,
            offset: i,
            data: Bytes::from_static(b"z"),
        }])
        .await
        .unwrap();
        p1.sync().await.unwrap();
    }
    p1.export().await.unwrap();
    // Device 0 is now stale: a writable import resilvers the txgs it missed.
    let p = Pool::import(devs.clone(), ImportOptions::default())
        .await
        .unwrap();
    assert_eq!(p.status().devices[0].state, DeviceState::Resilvering);
    let mut buf = [0u8; 4];
    p.read(64, 0, &mut buf).await.unwrap();
    assert_eq!(&buf, b"zzzz");
    let done = p.resilver_job().unwrap().wait().await.unwrap();
    assert!(done.from_txg > 1, "partial resilver: {done:?}");
    assert_eq!(p.status().devices[0].state, DeviceState::Online);
}

#[tokio::test]
async fn torn_label_write_keeps_previous_txg() {
    let power = Power::new();
    let devs: Vec<Arc<CrashDisk>> = (0..2)
        .map(|i| CrashDisk::new(&format!("c{i}"), 8 << 20, power.clone()))
        .collect();
    let dyn_devs: Vec<Arc<dyn BlockDevice>> = devs
        .iter()
        .map(|d| d.clone() as Arc<dyn BlockDevice>)
        .collect();
    let pool = Pool::create(dyn_devs, cfg(PoolLayout::Mirror))
        .await
        .unwrap();
    pool.apply(vec![
        Op::Create { id: 64 },
        Op::Write {
            id: 64,
            offset: 0,
            data: Bytes::from_static(b"first"),
        },
    ])
    .await
    .unwrap();
    let t1 = pool.sync_now().await.unwrap();
    pool.apply(vec![Op::Write {
        id: 64,
        offset: 0,
        data: Bytes::from_static(b"second"),
    }])
    .await
    .unwrap();
    let t2 = pool.sync_now().await.unwrap();
    assert_eq!(t2, t1 + 1);
    drop(pool);
    // Tear the label pair txg t2 went to, on every device: half of each copy's sectors zeroed.
    for d in &devs {
        let cap = d.geometry().capacity();
        for c in ingot_pool::engine::label::copies_for_txg(t2) {
            let off = ingot_pool::engine::label::label_offset(c, cap) as usize;
            d.with_image(|img| img[off + 4096..off + 8192].fill(0));
        }
    }
    let p = Pool::import(
        devs.iter()
            .map(|d| d.clone() as Arc<dyn BlockDevice>)
            .collect(),
        ImportOptions::default(),
    )
    .await
    .unwrap();
    assert_eq!(p.status().txg, t1);
    let mut buf = [0u8; 6];
    let n = p.read(64, 0, &mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"first");
    // The pool keeps working from t1 and the next commit overwrites the torn pair.
    p.apply(vec![Op::Write {
        id: 64,
        offset: 0,
        data: Bytes::from_static(b"third!"),
    }])
    .await
    .unwrap();
    assert_eq!(p.sync_now().await.unwrap(), t1 + 1);
    drop(p);
    let p = Pool::import(
        devs.iter()
            .map(|d| d.clone() as Arc<dyn BlockDevice>)
            .collect(),
        ImportOptions::default(),
    )
    .await
    .unwrap();
    let n = p.read(64, 0, &mut buf).await.unwrap();
    assert_eq!(&buf[..n], b"third!");
}

#[tokio::test]
async fn full_pool_returns_nospace_and_recovers_after_delete() {
    let devs = mem(1, 8);
    let mut c = cfg(PoolLayout::Stripe);
    c.compression = PoolCompression::Off;
    let pool = Pool::create(devs.clone(), c).await.unwrap();
    let mut r = rng(3);
    let mut id = 64;
    let mut written = Vec::new();
    let err = loop {
        let mut d = vec![0u8; 256 * 1024];
        rand::Rng::fill(&mut r, &mut d[..]);
        let res = pool
            .apply(vec![
                Op::Create { id },
                Op::Write {
                    id,
                    offset: 0,
                    data: Bytes::from(d),
                },
            ])
            .await;
        match res {
            Ok(()) => {
                written.push(id);
                id += 1;
            }
            Err(e) => break e,
        }
        assert!(id < 200, "never ran out of space");
    };
    assert!(matches!(err, StoreError::NoSpace), "{err}");
    // The failed batch left nothing behind.
    assert!(matches!(
        pool.size(id).await,
        Err(StoreError::NotFound { .. })
    ));
    // Commits still work on a full pool.
    pool.sync().await.unwrap();
    let full_used = pool.stats().used_bytes;
    // Delete everything; space comes back after the frees are durable.
    pool.apply(written.iter().map(|&id| Op::Delete { id }).collect())
        .await
        .unwrap();
    for _ in 0..3 {
        pool.sync().await.unwrap();
        pool.apply(vec![Op::Create { id: 5000 }, Op::Delete { id: 5000 }])
            .await
            .unwrap();
    }
    pool.sync().await.unwrap();
    assert!(pool.stats().used_bytes < full_used / 4);
    pool.apply(vec![
        Op::Create { id },
        Op::Write {
            id,
            offset: 0,
            data: Bytes::from(vec![5u8; 256 * 1024]),
        },
    ])
    .await
    .unwrap();
    pool.export().await.unwrap();
    let p = Pool::import(devs, ImportOptions::default()).await.unwrap();
    assert_eq!(p.size(id).await.unwrap(), 256 * 1024);
    let rep = p.verify_all().await.unwrap();
    assert!(rep.errors.is_empty(), "{:?}", rep.errors);
}

#[tokio::test]
async fn timer_commits_without_sync() {
    let devs = mem(1, 8);
    let mut c = cfg(PoolLayout::Stripe);
    c.tunables.txg_interval = Duration::from_millis(20);
    let pool = Pool::create(devs.clone(), c).await.unwrap();
    let t0 = pool.status().txg;
    pool.apply(vec![Op::Create { id: 64 }]).await.unwrap();
    // Wait (bounded) for the background commit; the assertion is on the outcome, not time.
    let mut waited = 0;
    while pool.status().txg == t0 && waited < 500 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        waited += 1;
    }
    assert!(pool.status().txg > t0, "timer never committed");
    drop(pool);
    let p = Pool::import(devs, ImportOptions::default()).await.unwrap();
    assert_eq!(p.size(64).await.unwrap(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writers_readers_and_timer_commits() {
    let devs = mem(2, 32);
    let mut c = cfg(PoolLayout::Mirror);
    c.tunables.txg_interval = Duration::from_millis(2);
    c.tunables.dirty_limit_bytes = 256 << 10;
    c.tunables.cache_bytes = 64 << 10;
    let pool = Arc::new(Pool::create(devs.clone(), c).await.unwrap());
    pool.apply((64..68).map(|id| Op::Create { id }).collect())
        .await
        .unwrap();
    let mut tasks = Vec::new();
    for w in 0..2u64 {
        let p = pool.clone();
        tasks.push(tokio::spawn(async move {
            for v in 1..=60u8 {
                let id = 64 + w * 2 + u64::from(v % 2);
                // A whole-object rewrite in one batch: readers must see all or nothing.
                p.apply(vec![Op::Write {
                    id,
                    offset: 0,
                    data: Bytes::from(vec![v; 70_000]),
                }])
                .await
                .unwrap();
            }
        }));
    }
    for _ in 0..2 {
        let p = pool.clone();
        tasks.push(tokio::spawn(async move {
            let mut buf = vec![0u8; 70_000];
            for i in 0..200u64 {
                let id = 64 + i % 4;
                let n = p.read(id, 0, &mut buf).await.unwrap();
                let first = buf[0];
                assert!(
                    buf[..n].iter().all(|&b| b == first),
                    "torn read of object {id}"
                );
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    pool.sync().await.unwrap();
    let before = model::read_back(pool.as_ref(), 4).await.unwrap();
    let rep = pool.verify_all().await.unwrap();
    assert!(rep.errors.is_empty(), "{:?}", rep.errors);
    drop(pool);
    let p = Pool::import(devs, ImportOptions::default()).await.unwrap();
    assert_eq!(model::read_back(&p, 4).await.unwrap(), before);
}

#[tokio::test]
async fn read_only_import_reads_and_never_writes() {
    let mems: Vec<Arc<MemBlockDevice>> = (0..2)
        .map(|i| Arc::new(MemBlockDevice::new(format!("ro{i}"), 4096, 2048)))
        .collect();
    let devs: Vec<Arc<dyn BlockDevice>> = mems
        .iter()
        .map(|m| m.clone() as Arc<dyn BlockDevice>)
        .collect();
    let pool = Pool::create(devs.clone(), cfg(PoolLayout::Mirror))
        .await
        .unwrap();
    pool.apply(vec![
        Op::Create { id: 64 },
        Op::Write {
            id: 64,
            offset: 0,
            data: Bytes::from_static(b"kept"),
        },
    ])
    .await
    .unwrap();
    pool.export().await.unwrap();
    let before: Vec<Vec<u8>> = mems.iter().map(|m| m.snapshot()).collect();
    let p = Pool::import(
        devs,
        ImportOptions {
            read_only: true,
            ..ImportOptions::default()
        },
    )
    .await
    .unwrap();
    assert!(p.status().read_only);
    let mut b = [0u8; 4];
    p.read(64, 0, &mut b).await.unwrap();
    assert_eq!(&b, b"kept");
    assert!(matches!(
        p.apply(vec![Op::Create { id: 65 }]).await,
        Err(StoreError::ReadOnly { .. })
    ));
    assert!(matches!(p.sync().await, Err(StoreError::ReadOnly { .. })));
    let rep = p.scrub().await.unwrap();
    assert!(rep.errors.is_empty());
    p.export().await.unwrap();
    let after: Vec<Vec<u8>> = mems.iter().map(|m| m.snapshot()).collect();
    assert!(before == after, "a read-only import wrote to the devices");
}

/// Fills the pool through object 65 (a "file" named in the records of object 64, a
/// "directory") until nothing is available to user data, with the open txg clean.
async fn fill_to_zero(pool: &Pool, r: &mut rand_chacha::ChaCha8Rng) {
    pool.apply(vec![
        Op::Create { id: 64 },
        Op::Create { id: 65 },
        Op::KvPut {
            id: 64,
            key: Bytes::from_static(b"fill"),
            value: Bytes::from_static(b"65"),
        },
    ])
    .await
    .unwrap();
    let mut off = 0u64;
    for len in [16 * 1024usize, 4096] {
        for _ in 0..10_000 {
            let mut d = vec![0u8; len];
            rand::Rng::fill(r, &mut d[..]);
            let res = pool
                .apply(vec![Op::Write {
                    id: 65,
                    offset: off,
                    data: Bytes::from(d),
                }])
                .await;
            match res {
                Ok(()) => off += 16 * 1024,
                Err(StoreError::NoSpace) => {
                    pool.sync().await.unwrap();
                    if pool.stats().available_bytes == 0 || len > 4096 {
                        break;
                    }
                }
                Err(e) => panic!("{e}"),
            }
        }
    }
    pool.sync().await.unwrap();
    assert_eq!(pool.stats().available_bytes, 0, "pool did not fill up");
    assert!(off > 4 << 20, "only {off} bytes fit");
}

#[tokio::test]
async fn delete_on_a_full_pool_uses_the_reserve_and_space_comes_back_without_other_writes() {
    let devs = mem(1, 8);
    let mut c = cfg(PoolLayout::Stripe);
    c.compression = PoolCompression::Off;
    let pool = Pool::create(devs.clone(), c).await.unwrap();
    fill_to_zero(&pool, &mut rng(11)).await;
    // Adding data is refused cleanly.
    let err = pool
        .apply(vec![Op::Write {
            id: 65,
            offset: 0,
            data: Bytes::from(vec![7u8; 4096]),
        }])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NoSpace), "{err}");
    // An unlink as the fs issues it (entry removed, object deleted, the directory's
    // attributes rewritten) proceeds on the full pool.
    pool.apply(vec![
        Op::KvDelete {
            id: 64,
            key: Bytes::from_static(b"fill"),
        },
        Op::Delete { id: 65 },
        Op::SetAttr {
            id: 64,
            attr: Bytes::from_static(b"dir attributes, mtime changed"),
        },
    ])
    .await
    .unwrap();
    // The freeing txg and the next become durable with nothing else written: no other
    // batch is needed for the space to come back.
    pool.sync().await.unwrap();
    pool.sync().await.unwrap();
    let st = pool.stats();
    assert!(
        st.available_bytes > st.capacity_bytes / 2,
        "space did not come back: {st:?}"
    );
    let data = vec![9u8; 1 << 20];
    pool.apply(vec![
        Op::Create { id: 66 },
        Op::Write {
            id: 66,
            offset: 0,
            data: Bytes::from(data.clone()),
        },
    ])
    .await
    .unwrap();
    pool.export().await.unwrap();
    let p = Pool::import(devs, ImportOptions::default()).await.unwrap();
    let mut buf = vec![0u8; 1 << 20];
    assert_eq!(p.read(66, 0, &mut buf).await.unwrap(), 1 << 20);
    assert!(buf == data);
    assert!(matches!(p.size(65).await, Err(StoreError::NotFound { .. })));
    let rep = p.verify_all().await.unwrap();
    assert!(rep.errors.is_empty(), "{:?}", rep.errors);
}

#[tokio::test]
async fn freeing_batches_on_a_full_pool_are_accepted_and_writes_are_not() {
    let devs = mem(1, 8);
    let mut c = cfg(PoolLayout::Stripe);
    c.compression = PoolCompression::Off;
    let pool = Pool::create(devs, c).await.unwrap();
    fill_to_zero(&pool, &mut rng(12)).await;
    // A batch that adds a record and deletes nothing, or that writes data (whatever else
    // it removes), is not a free: refused.
    let err = pool
        .apply(vec![Op::KvPut {
            id: 64,
            key: Bytes::from_static(b"new"),
            value: Bytes::from_static(b"x"),
        }])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NoSpace), "{err}");
    let err = pool
        .apply(vec![
            Op::KvDelete {
                id: 64,
                key: Bytes::from_static(b"fill"),
            },
            Op::Write {
                id: 65,
                offset: 1 << 30,
                data: Bytes::from(vec![3u8; 16 * 1024]),
            },
        ])
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NoSpace), "{err}");
    // Truncate down to a partial record (rewrites the tail record from the reserve), punch
    // a hole, an orphan-list style swap of records, an attribute-only rename-like batch.
    pool.apply(vec![Op::Truncate {
        id: 65,
        size: 3 * 16 * 1024 + 100,
    }])
    .await
    .unwrap();
    assert_eq!(pool.size(65).await.unwrap(), 3 * 16 * 1024 + 100);
    pool.apply(vec![Op::PunchHole {
        id: 65,
        offset: 0,
        len: 16 * 1024,
    }])
    .await
    .unwrap();
    pool.apply(vec![
        Op::KvDelete {
            id: 64,
            key: Bytes::from_static(b"fill"),
        },
        Op::KvPut {
            id: 64,
            key: Bytes::from_static(b"renamed"),
            value: Bytes::from_static(b"65"),
        },
    ])
    .await
    .unwrap();
    assert_eq!(
        pool.kv_get(64, b"renamed").await.unwrap().as_deref(),
        Some(&b"65"[..])
    );
    // The data they freed comes back.
    pool.sync().await.unwrap();
    pool.sync().await.unwrap();
    assert!(pool.stats().available_bytes > 0);
}

#[tokio::test]
async fn space_freed_on_a_tight_pool_comes_back_without_waiting_for_the_txg_interval() {
    let devs = mem(1, 8);
    let mut c = cfg(PoolLayout::Stripe);
    c.compression = PoolCompression::Off;
    // One hour: only a prompt commit can give the space back within the bounded wait.
    c.tunables.txg_interval = Duration::from_secs(3600);
    c.tunables.idle_commit = Duration::ZERO;
    let pool = Pool::create(devs, c).await.unwrap();
    fill_to_zero(&pool, &mut rng(13)).await;
    pool.apply(vec![
        Op::KvDelete {
            id: 64,
            key: Bytes::from_static(b"fill"),
        },
        Op::Delete { id: 65 },
    ])
    .await
    .unwrap();
    let mut waited = 0;
    while pool.stats().available_bytes == 0 && waited < 500 {
        tokio::time::sleep(Duration::from_millis(20)).await;
        waited += 1;
    }
    let st = pool.stats();
    assert!(
        st.available_bytes > st.capacity_bytes / 2,
        "space did not come back promptly: {st:?}"
    );
}

#[tokio::test]
async fn compression_and_txg_interval_change_while_running() {
    let devs = mem(1, 16);
    let mut c = cfg(PoolLayout::Stripe);
    c.compression = PoolCompression::Zstd { level: 1 };
    let pool = Pool::create(devs.clone(), c).await.unwrap();
    let text: Vec<u8> = b"compressible text line\n".repeat(4096).to_vec();
    pool.apply(vec![
        Op::Create { id: 70 },
        Op::Write {
            id: 70,
            offset: 0,
            data: Bytes::from(text.clone()),
        },
    ])
    .await
    .unwrap();
    pool.sync().await.unwrap();
    let ratio_zstd = pool.status().compression_ratio;
    assert!(ratio_zstd > 2.0, "{ratio_zstd}");
    // Off for new writes: the new object is stored raw, the old one stays readable.
    pool.set_compression(PoolCompression::Off).await.unwrap();
    assert_eq!(pool.status().compression, PoolCompression::Off);
    pool.apply(vec![
        Op::Create { id: 71 },
        Op::Write {
            id: 71,
            offset: 0,
            data: Bytes::from(text.clone()),
        },
    ])
    .await
    .unwrap();
    pool.sync().await.unwrap();
    assert!(pool.status().compression_ratio < ratio_zstd);
    // Bad values are refused and change nothing.
    assert!(
        pool.set_compression(PoolCompression::Zstd { level: 40 })
            .await
            .is_err()
    );
    assert!(pool.set_txg_interval(Duration::ZERO).is_err());
    pool.set_txg_interval(Duration::from_millis(250)).unwrap();
    assert_eq!(pool.txg_interval(), Duration::from_millis(250));
    // The setting is in the labels; both objects read back after an import.
    pool.export().await.unwrap();
    let p = Pool::import(devs, ImportOptions::default()).await.unwrap();
    assert_eq!(p.status().compression, PoolCompression::Off);
    for id in [70, 71] {
        let mut buf = vec![0u8; text.len()];
        assert_eq!(p.read(id, 0, &mut buf).await.unwrap(), text.len());
        assert_eq!(buf, text);
    }
}
