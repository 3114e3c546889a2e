//! Engine tests of locked-pool maintenance that need crate-internal access: after a locked
//! pool repaired bit rot and replaced a device (label-only commits), the raw device images
//! still hold no key, passphrase, name or data in the clear.

use super::config::{ImportOptions, PoolConfig};
use super::label::{LABEL_AREA, PoolCompression, PoolLayout};
use super::pool::Pool;
use super::resilver::ResilverOptions;
use crate::crypto::{KdfParams, KeySlot, Passphrase};
use crate::store::{ObjectStore, Op};
use bytes::Bytes;
use ingot_hal::blockdev::{BlockDevice, MemBlockDevice, WriteFlags};
use std::sync::Arc;

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn dyns(m: &[Arc<MemBlockDevice>]) -> Vec<Arc<dyn BlockDevice>> {
    m.iter()
        .map(|m| m.clone() as Arc<dyn BlockDevice>)
        .collect()
}

#[tokio::test]
async fn locked_repairs_and_replace_write_no_key_name_or_data_in_the_clear() {
    let mems: Vec<Arc<MemBlockDevice>> = (0..2)
        .map(|i| Arc::new(MemBlockDevice::new(format!("l{i}"), 4096, 2048)))
        .collect();
    let mut cfg = PoolConfig::new("secret", PoolLayout::Mirror);
    cfg.compression = PoolCompression::Off;
    cfg.kdf = KdfParams::FAST_INSECURE;
    cfg.passphrase = Some("correct horse".into());
    let pool = Pool::create(dyns(&mems), cfg).await.unwrap();
    let data: Vec<u8> = b"PLAINTEXT-CONTENT-OF-A-FILE-0123456789".repeat(200);
    pool.apply(vec![
        Op::Create { id: 64 },
        Op::KvPut {
            id: 64,
            key: Bytes::from_static(b"very-secret-file-name.txt"),
            value: Bytes::from_static(b"inode-77"),
        },
        Op::Write {
            id: 64,
            offset: 0,
            data: Bytes::from(data.clone()),
        },
    ])
    .await
    .unwrap();
    pool.export().await.unwrap();
    let label = Pool::read_labels(mems[0].as_ref()).await.remove(0).unwrap();
    let mk = KeySlot::decode(&label.key_slot)
        .unwrap()
        .unwrap(&Passphrase::new("correct horse"))
        .unwrap();
    let (a, b) = mk.xts_halves();
    let (xa, xb) = (a.to_vec(), b.to_vec());
    // Rot the start of device 1's data area.
    for s in 0..64u64 {
        let off = LABEL_AREA + s * 4096;
        let mut b = vec![0u8; 4096];
        mems[1].read(off, &mut b).await.unwrap();
        b[9] ^= 0xa5;
        mems[1].write(off, &b, WriteFlags::NONE).await.unwrap();
    }
    // Locked: scrub repairs, column 0 is replaced, labels are rewritten label-only.
    let pool = Pool::import(dyns(&mems), ImportOptions::default())
        .await
        .unwrap();
    assert!(pool.status().locked);
    let p = pool
        .start_scrub(super::scrub::ScrubOptions::default())
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert!(p.errors_found > 0 && p.repaired == p.errors_found, "{p:?}");
    let fresh = Arc::new(MemBlockDevice::new("fresh", 4096, 2048));
    let h = pool
        .replace(0, fresh.clone(), ResilverOptions::default())
        .await
        .unwrap();
    h.wait().await.unwrap();
    pool.export().await.unwrap();
    for m in [&mems[0], &mems[1], &fresh] {
        let img = m.snapshot();
        assert!(
            !contains(&img, b"very-secret-file-name.txt"),
            "name in the clear"
        );
        assert!(
            !contains(&img, b"PLAINTEXT-CONTENT-OF-A-FILE"),
            "data in the clear"
        );
        assert!(!contains(&img, &xa), "XTS data key in the clear");
        assert!(!contains(&img, &xb), "XTS tweak key in the clear");
        assert!(!contains(&img, b"correct horse"), "passphrase in the clear");
    }
    // The new member and the repaired one hold the data: it reads back with the key.
    let pool = Pool::import(
        vec![fresh.clone(), mems[1].clone()],
        ImportOptions {
            passphrase: Some("correct horse".into()),
            ..ImportOptions::default()
        },
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; data.len()];
    assert_eq!(pool.read(64, 0, &mut buf).await.unwrap(), data.len());
    assert!(buf == data);
    assert_eq!(
        pool.kv_get(64, b"very-secret-file-name.txt")
            .await
            .unwrap()
            .unwrap(),
        Bytes::from_static(b"inode-77")
    );
    let again = pool
        .start_scrub(super::scrub::ScrubOptions::default())
        .await
        .unwrap()
        .wait()
        .await
        .unwrap();
    assert_eq!(again.errors_found, 0, "{again:?}");
}
