//! Engine tests that need crate-internal access: the raw-image key scan.

use super::config::{ImportOptions, PoolConfig};
use super::label::{PoolCompression, PoolLayout};
use super::pool::Pool;
use crate::crypto::{KdfParams, KeySlot, Passphrase};
use crate::store::{ObjectStore, Op};
use bytes::Bytes;
use ingot_hal::blockdev::{BlockDevice, MemBlockDevice};
use std::sync::Arc;

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

async fn make(encrypted: bool) -> (Vec<Arc<MemBlockDevice>>, Vec<u8>) {
    let mems: Vec<Arc<MemBlockDevice>> = (0..2)
        .map(|i| Arc::new(MemBlockDevice::new(format!("k{i}"), 4096, 2048)))
        .collect();
    let devs: Vec<Arc<dyn BlockDevice>> = mems
        .iter()
        .map(|m| m.clone() as Arc<dyn BlockDevice>)
        .collect();
    let mut cfg = PoolConfig::new("secret", PoolLayout::Mirror);
    cfg.compression = PoolCompression::Off;
    cfg.kdf = KdfParams::FAST_INSECURE;
    cfg.passphrase = encrypted.then(|| "correct horse".to_string());
    let pool = Pool::create(devs.clone(), cfg).await.unwrap();
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
            data: Bytes::from(data),
        },
    ])
    .await
    .unwrap();
    pool.export().await.unwrap();
    let master = if encrypted {
        let label = Pool::read_labels(devs[0].as_ref()).await.remove(0).unwrap();
        let slot = KeySlot::decode(&label.key_slot).unwrap();
        let mk = slot.unwrap(&Passphrase::new("correct horse")).unwrap();
        let (a, b) = mk.xts_halves();
        [a.as_slice(), b.as_slice()].concat()
    } else {
        Vec::new()
    };
    (mems, master)
}

#[tokio::test]
async fn raw_images_hold_no_key_name_or_data_when_encrypted() {
    // Control: unencrypted, the name and the data are visible (so the scan can fail).
    let (mems, _) = make(false).await;
    let img = mems[0].snapshot();
    assert!(contains(&img, b"very-secret-file-name.txt"));
    assert!(contains(&img, b"PLAINTEXT-CONTENT-OF-A-FILE"));

    let (mems, master) = make(true).await;
    assert_eq!(master.len(), 64);
    for m in &mems {
        let img = m.snapshot();
        assert!(
            !contains(&img, b"very-secret-file-name.txt"),
            "name in the clear"
        );
        assert!(
            !contains(&img, b"PLAINTEXT-CONTENT-OF-A-FILE"),
            "data in the clear"
        );
        assert!(!contains(&img, &master[..32]), "XTS data key in the clear");
        assert!(!contains(&img, &master[32..]), "XTS tweak key in the clear");
        assert!(!contains(&img, b"correct horse"), "passphrase in the clear");
    }
    // And it still opens with the passphrase.
    let devs: Vec<Arc<dyn BlockDevice>> = mems
        .iter()
        .map(|m| m.clone() as Arc<dyn BlockDevice>)
        .collect();
    let p = Pool::import(
        devs,
        ImportOptions {
            passphrase: Some("correct horse".into()),
            ..ImportOptions::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        p.kv_get(64, b"very-secret-file-name.txt")
            .await
            .unwrap()
            .unwrap(),
        Bytes::from_static(b"inode-77")
    );
}
