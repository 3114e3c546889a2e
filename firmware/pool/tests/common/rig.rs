//! Pools over fault-injecting RAM devices: the rig of the resilience and fault-matrix
//! tests (devices, their config, seeded data, the redundancy each layout has).

use ingot_hal::blockdev::faulty::{FaultyBlockDevice, FaultyConfig, PowerRail};
use ingot_hal::blockdev::{BlockDevice, MemBlockDevice};
use ingot_pool::PoolCompression;
use ingot_pool::crypto::KdfParams;
use ingot_pool::engine::scrub::{ScrubOptions, ScrubProgress};
use ingot_pool::engine::{Pool, PoolConfig, PoolLayout};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

/// Devices of a pool, as fault injectors and as the pool sees them.
pub struct Rig {
    /// The rail the devices share (power cuts hit them all).
    pub rail: Arc<PowerRail>,
    /// The devices, to inject faults.
    pub faulty: Vec<Arc<FaultyBlockDevice>>,
    /// The same devices, for the pool.
    pub devs: Vec<Arc<dyn BlockDevice>>,
}

/// A fault-injecting RAM device of `blocks` 4 KiB blocks on `rail`.
pub fn disk(rail: &Arc<PowerRail>, name: &str, blocks: u64, seed: u64) -> Arc<FaultyBlockDevice> {
    let media: Arc<dyn BlockDevice> = Arc::new(MemBlockDevice::new(name, 4096, blocks));
    Arc::new(FaultyBlockDevice::with_config(
        media,
        FaultyConfig {
            seed,
            rail: Some(rail.clone()),
            ..FaultyConfig::default()
        },
    ))
}

/// `n` devices of `blocks` 4 KiB blocks on one rail.
pub fn rig_of(n: usize, blocks: u64) -> Rig {
    let rail = PowerRail::new();
    let faulty: Vec<_> = (0..n)
        .map(|i| disk(&rail, &format!("d{i}"), blocks, i as u64))
        .collect();
    let devs = faulty
        .iter()
        .map(|d| d.clone() as Arc<dyn BlockDevice>)
        .collect();
    Rig { rail, faulty, devs }
}

/// A pool config without compression (so data lands where tests aim) and a cheap KDF.
pub fn config(name: &str, layout: PoolLayout) -> PoolConfig {
    let mut c = PoolConfig::new(name, layout);
    c.compression = PoolCompression::Off;
    c.kdf = KdfParams::FAST_INSECURE;
    // Fault tests rot the media under the pool and read it back: no decoded-record cache
    // (which keeps recently written data in memory) between them and the devices.
    c.tunables.record_cache_bytes = 0;
    c
}

/// `len` seeded random bytes.
pub fn random(seed: u64, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    ChaCha8Rng::seed_from_u64(seed).fill_bytes(&mut v);
    v
}

/// Devices (columns) a layout of `n` devices may lose.
pub fn redundancy(layout: PoolLayout, n: usize) -> usize {
    match layout {
        PoolLayout::Stripe => 0,
        PoolLayout::Mirror => n - 1,
        PoolLayout::Raid10 | PoolLayout::Raidz1 => 1,
        PoolLayout::Raidz2 => 2,
    }
}

/// Run a scrub to its end (no cap, resuming a saved position if there is one).
pub async fn scrub(pool: &Pool) -> ScrubProgress {
    pool.start_scrub(ScrubOptions::default())
        .await
        .unwrap()
        .wait()
        .await
        .unwrap()
}
