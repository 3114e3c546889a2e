//! Property: whatever the sequence of writes and flushes, the cut point and the crash seed, every
//! sector of the recovered image holds either its last durable value or the value of a write
//! issued after that (never anything else), and reads before the cut see the newest writes.

use ingot_hal::blockdev::{
    BlockDevice, BlockError, CrashPolicy, FaultyBlockDevice, FaultyConfig, MemBlockDevice,
    WriteFlags,
};
use proptest::prelude::*;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;

const BS: usize = 512;
const SECTORS: usize = 16;

#[derive(Debug, Clone)]
enum Step {
    Write {
        sector: usize,
        count: usize,
        fua: bool,
    },
    Zero {
        sector: usize,
        count: usize,
    },
    Flush,
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        4 => (0..SECTORS, 1..=4usize, any::<bool>()).prop_map(|(s, c, fua)| Step::Write {
            sector: s,
            count: c.min(SECTORS - s),
            fua
        }),
        1 => (0..SECTORS, 1..=4usize).prop_map(|(s, c)| Step::Zero {
            sector: s,
            count: c.min(SECTORS - s)
        }),
        1 => Just(Step::Flush),
    ]
}

/// Unique content for sector `sector` of step `step` (never all zeroes).
fn content(step: usize, sector: usize) -> Vec<u8> {
    let mut v = vec![0xeeu8; BS];
    v[..8].copy_from_slice(&(step as u64 + 1).to_le_bytes());
    v[8..16].copy_from_slice(&(sector as u64).to_le_bytes());
    v
}

/// What the model knows about one sector.
#[derive(Clone)]
struct Model {
    /// Value a crash cannot lose.
    durable: Vec<u8>,
    /// Values written since `durable` that a crash may leave.
    candidates: Vec<Vec<u8>>,
    /// What a read returns.
    visible: Vec<u8>,
}

fn policy(i: u8) -> CrashPolicy {
    match i {
        0 => CrashPolicy::default(),
        1 => CrashPolicy {
            reorder: false,
            ..CrashPolicy::default()
        },
        2 => CrashPolicy::KEEP_ALL,
        _ => CrashPolicy::DROP_ALL,
    }
}

async fn check(steps: Vec<Step>, cut: usize, seed: u64, policy_idx: u8) -> Result<(), String> {
    let mem = Arc::new(MemBlockDevice::new("m", BS as u32, SECTORS as u64));
    let dev = FaultyBlockDevice::with_config(
        mem.clone(),
        FaultyConfig {
            crash: policy(policy_idx),
            ..FaultyConfig::default()
        },
    );
    let zero = vec![0u8; BS];
    let mut model = vec![
        Model {
            durable: zero.clone(),
            candidates: Vec::new(),
            visible: zero.clone(),
        };
        SECTORS
    ];
    // With KEEP_ALL in issue order, the image is exactly the visible state plus the in-flight write.
    let mut keep_all_image: Vec<Vec<u8>> = vec![zero.clone(); SECTORS];
    dev.rail().arm_after(cut as u64);
    for (i, st) in steps.iter().enumerate() {
        let tripped = i == cut;
        let r = match st {
            Step::Write { sector, count, fua } => {
                let data: Vec<u8> = (*sector..sector + count)
                    .flat_map(|s| content(i, s))
                    .collect();
                let flags = if *fua {
                    WriteFlags::FUA
                } else {
                    WriteFlags::NONE
                };
                let r = dev.write((sector * BS) as u64, &data, flags).await;
                for s in *sector..sector + count {
                    let v = content(i, s);
                    let m = &mut model[s];
                    if tripped || !*fua {
                        m.candidates.push(v.clone());
                    } else {
                        m.durable = v.clone();
                        m.candidates.clear();
                    }
                    if !tripped {
                        m.visible = v.clone();
                    }
                    keep_all_image[s] = v;
                }
                r
            }
            Step::Zero { sector, count } => {
                let r = dev
                    .write_zeroes((sector * BS) as u64, (count * BS) as u64)
                    .await;
                for s in *sector..sector + count {
                    model[s].candidates.push(zero.clone());
                    if !tripped {
                        model[s].visible = zero.clone();
                    }
                    keep_all_image[s] = zero.clone();
                }
                r
            }
            Step::Flush => {
                let r = dev.flush().await;
                if !tripped {
                    for m in &mut model {
                        m.durable = m.visible.clone();
                        m.candidates.clear();
                    }
                }
                r
            }
        };
        if tripped {
            match r {
                Err(BlockError::DeviceLost { .. }) => break,
                other => return Err(format!("step {i} should trip the cut, got {other:?}")),
            }
        }
        r.map_err(|e| format!("step {i}: {e}"))?;
        // Read-your-writes before the cut.
        let mut all = vec![0u8; SECTORS * BS];
        dev.read(0, &mut all).await.map_err(|e| e.to_string())?;
        for (s, m) in model.iter().enumerate() {
            if all[s * BS..(s + 1) * BS] != m.visible[..] {
                return Err(format!(
                    "step {i}: read of sector {s} differs from last write"
                ));
            }
        }
    }
    dev.rail().cut_now();
    dev.recover(&mut ChaCha8Rng::seed_from_u64(seed))
        .await
        .map_err(|e| e.to_string())?;
    let img = mem.snapshot();
    for (s, m) in model.iter().enumerate() {
        let got = &img[s * BS..(s + 1) * BS];
        let ok = got == &m.durable[..] || m.candidates.iter().any(|c| got == &c[..]);
        if !ok {
            return Err(format!(
                "sector {s}: recovered bytes are neither durable nor a later write (step tag {:?})",
                &got[..8]
            ));
        }
        match policy_idx {
            2 if got != &keep_all_image[s][..] => {
                return Err(format!("KEEP_ALL: sector {s} is not the newest write"));
            }
            3 if got != &m.durable[..] => {
                return Err(format!("DROP_ALL: sector {s} is not the durable value"));
            }
            _ => {}
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn recovered_image_is_durable_or_later_write(
        steps in prop::collection::vec(step(), 1..40),
        cut_frac in 0.0f64..=1.0,
        seed in any::<u64>(),
        policy_idx in 0u8..4,
    ) {
        let cut = ((steps.len() as f64) * cut_frac) as usize;
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let r = rt.block_on(check(steps, cut, seed, policy_idx));
        prop_assert!(r.is_ok(), "{}", r.unwrap_err());
    }
}
