//! Encrypted pools: wrong passphrase, locked import with keyless verification, passphrase change.

use bytes::Bytes;
use ingot_hal::blockdev::{BlockDevice, MemBlockDevice};
use ingot_pool::PoolError;
use ingot_pool::crypto::KdfParams;
use ingot_pool::engine::{ImportOptions, Pool, PoolConfig, PoolLayout};
use ingot_pool::store::{ObjectStore, Op, StoreError};
use std::sync::Arc;

fn devs() -> (Vec<Arc<MemBlockDevice>>, Vec<Arc<dyn BlockDevice>>) {
    let m: Vec<Arc<MemBlockDevice>> = (0..3)
        .map(|i| Arc::new(MemBlockDevice::new(format!("e{i}"), 4096, 2048)))
        .collect();
    let d = m
        .iter()
        .map(|x| x.clone() as Arc<dyn BlockDevice>)
        .collect();
    (m, d)
}

fn with_pass(p: Option<&str>) -> ImportOptions {
    ImportOptions {
        passphrase: p.map(str::to_string),
        ..ImportOptions::default()
    }
}

async fn create(d: &[Arc<dyn BlockDevice>]) {
    let mut cfg = PoolConfig::new("vault", PoolLayout::Raidz1);
    cfg.kdf = KdfParams::FAST_INSECURE;
    cfg.passphrase = Some("old pass".into());
    let pool = Pool::create(d.to_vec(), cfg).await.unwrap();
    pool.apply(vec![
        Op::Create { id: 64 },
        Op::Write {
            id: 64,
            offset: 0,
            data: Bytes::from(vec![9u8; 300_000]),
        },
        Op::KvPut {
            id: 64,
            key: Bytes::from_static(b"k"),
            value: Bytes::from_static(b"v"),
        },
    ])
    .await
    .unwrap();
    pool.export().await.unwrap();
}

#[tokio::test]
async fn wrong_passphrase_is_clear_and_changes_nothing() {
    let (m, d) = devs();
    create(&d).await;
    let before: Vec<Vec<u8>> = m.iter().map(|x| x.snapshot()).collect();
    let e = Pool::import(d.clone(), with_pass(Some("nope")))
        .await
        .unwrap_err();
    assert!(matches!(e, PoolError::WrongPassphrase { .. }), "{e}");
    assert!(e.to_string().contains("wrong passphrase"));
    let after: Vec<Vec<u8>> = m.iter().map(|x| x.snapshot()).collect();
    assert!(before == after, "a failed import wrote to the devices");
    let p = Pool::import(d, with_pass(Some("old pass"))).await.unwrap();
    assert_eq!(p.size(64).await.unwrap(), 300_000);
}

#[tokio::test]
async fn locked_import_verifies_without_keys() {
    let (_m, d) = devs();
    create(&d).await;
    let p = Pool::import(d.clone(), with_pass(None)).await.unwrap();
    let st = p.status();
    // Locked, but writable for keyless maintenance (scrub repairs, resilver, replace).
    assert!(st.locked && st.encrypted && !st.read_only);
    assert!(st.damaged_note.is_some());
    assert!(matches!(p.size(64).await, Err(StoreError::Locked)));
    assert!(matches!(
        p.apply(vec![Op::Create { id: 65 }]).await,
        Err(StoreError::Locked)
    ));
    let rep = p.verify_all().await.unwrap();
    assert!(rep.errors.is_empty(), "{:?}", rep.errors);
    assert!(rep.nodes >= 1 && rep.extents >= 3, "{rep:?}");
    drop(p);
    // Damage the whole data area on every device (beyond what raidz1 can rebuild):
    // the keyless walk must report it, not panic.
    for dev in &d {
        let start = ingot_pool::engine::label::LABEL_AREA;
        let end = dev.geometry().capacity() - ingot_pool::engine::label::LABEL_AREA;
        let mut off = start;
        while off < end {
            let mut b = vec![0u8; 4096];
            dev.read(off, &mut b).await.unwrap();
            b[17] ^= 0x5a;
            dev.write(off, &b, ingot_hal::blockdev::WriteFlags::NONE)
                .await
                .unwrap();
            off += 4096;
        }
    }
    let e = Pool::import(d.clone(), with_pass(None)).await.unwrap_err();
    assert!(matches!(e, PoolError::NoValidTxg { .. }), "{e}");
}

#[tokio::test]
async fn change_passphrase_rewraps_only() {
    let (m, d) = devs();
    create(&d).await;
    let p = Pool::import(d.clone(), with_pass(Some("old pass")))
        .await
        .unwrap();
    assert!(matches!(
        p.change_passphrase("bad", "new pass").await,
        Err(PoolError::WrongPassphrase { .. })
    ));
    p.change_passphrase("old pass", "new pass").await.unwrap();
    p.export().await.unwrap();
    let e = Pool::import(d.clone(), with_pass(Some("old pass")))
        .await
        .unwrap_err();
    assert!(matches!(e, PoolError::WrongPassphrase { .. }));
    let p = Pool::import(d, with_pass(Some("new pass"))).await.unwrap();
    let mut b = vec![0u8; 10];
    p.read(64, 299_990, &mut b).await.unwrap();
    assert_eq!(b, vec![9u8; 10]);
    let _ = m;
}
