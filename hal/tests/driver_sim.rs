//! The NVMe driver against the simulated controller: bring-up, every I/O command with
//! data verification on 512 B and 4 KiB LBA formats, MDTS splitting and chained PRP
//! lists, polled and interrupt modes, many concurrent commands across queue pairs, admin
//! log pages and clean shutdown. The simulated IOMMU must never see a bad DMA address.

use ingot_hal::backing::DeviceBacking;
use ingot_hal::blockdev::{BlockDevice, BlockError, DeviceKind, WriteFlags};
use ingot_hal::nvme::driver::{Controller, DriverConfig, Namespace};
use ingot_hal::nvme::spec::{csts, reg};
use ingot_hal::sim::{SimConfig, SimController, SimTuning};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;
use std::time::Duration;

const MIB: u64 = 1 << 20;

fn sim(name: &str, size: u64, lba: u32, tuning: SimTuning) -> Arc<SimController> {
    let mut cfg = SimConfig::ram(name, size, lba);
    cfg.tuning = tuning;
    Arc::new(SimController::new_ram(cfg).expect("sim"))
}

fn cfg() -> DriverConfig {
    DriverConfig {
        io_queues: 4,
        queue_depth: 32,
        command_timeout: Duration::from_secs(2),
        ..DriverConfig::default()
    }
}

/// Hang guard only: every operation here completes in milliseconds.
async fn guard<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(120), f)
        .await
        .expect("operation hung")
}

async fn up(sim: &Arc<SimController>, cfg: DriverConfig) -> (Controller, Namespace) {
    let ctrl = guard(Controller::init(sim.clone(), cfg))
        .await
        .expect("init");
    let ns = ctrl.namespace(1).expect("namespace 1");
    (ctrl, ns)
}

/// Random writes (some FUA), write zeroes, deallocate, flush, then a full read-back
/// compared with a model of the device.
async fn exercise(ns: &Namespace, seed: u64, ops: usize) {
    let g = ns.geometry();
    let bs = u64::from(g.block_size);
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut model = vec![0u8; g.capacity() as usize];
    for i in 0..ops {
        let blocks = rng.random_range(1..=(g.blocks / 16).max(1));
        let at = rng.random_range(0..=g.blocks - blocks) * bs;
        let len = (blocks * bs) as usize;
        match i % 5 {
            3 => {
                guard(ns.write_zeroes(at, len as u64)).await.unwrap();
                model[at as usize..at as usize + len].fill(0);
            }
            4 => {
                // DLFEAT: deallocated blocks read as zeroes on the simulator.
                guard(ns.deallocate(at, len as u64)).await.unwrap();
                model[at as usize..at as usize + len].fill(0);
            }
            _ => {
                let mut data = vec![0u8; len];
                rng.fill(&mut data[..]);
                let flags = if i % 2 == 0 {
                    WriteFlags::FUA
                } else {
                    WriteFlags::NONE
                };
                guard(ns.write(at, &data, flags)).await.unwrap();
                model[at as usize..at as usize + len].copy_from_slice(&data);
            }
        }
    }
    guard(ns.flush()).await.unwrap();
    let mut back = vec![0u8; model.len()];
    guard(ns.read(0, &mut back)).await.unwrap();
    let first_bad = back.iter().zip(&model).position(|(a, b)| a != b);
    assert_eq!(first_bad, None, "device differs from model");
}

async fn lba_format(lba: u32) {
    let s = sim(&format!("fmt{lba}"), 8 * MIB, lba, SimTuning::default());
    let (ctrl, ns) = up(&s, cfg()).await;
    let g = ns.geometry();
    assert_eq!(g.block_size, lba);
    assert_eq!(g.capacity(), 8 * MIB);
    assert_eq!(g.max_transfer, 128 << 10, "sim MDTS 5 = 128 KiB");
    assert!(g.volatile_write_cache);
    let id = ns.identity();
    assert_eq!(id.kind, DeviceKind::NvmeSim);
    assert_eq!(id.location, format!("sim:fmt{lba}/n1"));
    assert_eq!(id.serial, format!("SIM-fmt{lba}"));
    assert!(!id.model.is_empty() && !id.firmware.is_empty());
    assert_eq!(ctrl.io_queue_count(), 4);
    exercise(&ns, u64::from(lba), 60).await;
    // Misaligned and out-of-range requests are refused before reaching the device.
    let mut small = vec![0u8; lba as usize];
    let e = guard(ns.read(1, &mut small)).await.unwrap_err();
    assert!(matches!(e, BlockError::Misaligned { .. }), "{e}");
    let e = guard(ns.read(8 * MIB, &mut small)).await.unwrap_err();
    assert!(matches!(e, BlockError::OutOfRange { .. }), "{e}");
    let h = guard(ns.health()).await.unwrap();
    assert!(h.data_units_written > 0, "{h:?}");
    let smart = guard(ctrl.smart_log()).await.unwrap();
    assert!(smart.host_write_commands > 0);
    assert!(guard(ctrl.error_log()).await.is_ok());
    let stats = ctrl.stats();
    assert_eq!(stats.len(), 5);
    assert!(stats[1..].iter().all(|q| q.commands > 0), "{stats:?}");
    assert_eq!(stats.iter().map(|q| q.timeouts + q.resets).sum::<u64>(), 0);
    guard(ctrl.shutdown()).await.unwrap();
    guard(ctrl.shutdown())
        .await
        .expect("a second shutdown is a no-op");
    let csts_v = s.read32(reg::CSTS);
    assert_eq!(
        csts_v & csts::SHST_MASK,
        csts::SHST_COMPLETE,
        "CSTS {csts_v:#x}"
    );
    assert_eq!(s.iommu().fault_count(), 0, "{:?}", s.iommu().faults());
    let e = guard(ns.read(0, &mut small)).await.unwrap_err();
    assert!(
        matches!(&e, BlockError::DeviceLost { reason, .. } if reason.contains("shut down")),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lba_512() {
    lba_format(512).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lba_4096() {
    lba_format(4096).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mdts_splits_large_requests() {
    // MDTS 1: 8 KiB per command, so a 1 MiB write is 128 commands.
    let tuning = SimTuning {
        mdts: 1,
        ..SimTuning::default()
    };
    let s = sim("mdts", 4 * MIB, 512, tuning);
    let (ctrl, ns) = up(&s, cfg()).await;
    assert_eq!(ns.geometry().max_transfer, 8192);
    let before = s.stats().commands;
    let mut rng = ChaCha8Rng::seed_from_u64(7);
    let mut data = vec![0u8; MIB as usize];
    rng.fill(&mut data[..]);
    guard(ns.write(512 * 3, &data, WriteFlags::NONE))
        .await
        .unwrap();
    assert_eq!(s.stats().commands - before, 128);
    let mut back = vec![0u8; data.len()];
    guard(ns.read(512 * 3, &mut back)).await.unwrap();
    assert!(back == data);
    guard(ctrl.shutdown()).await.unwrap();
    assert_eq!(s.iommu().fault_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chained_prp_lists_for_very_large_transfers() {
    // No MDTS limit and a 4 MiB command: 1024 pages need two chained PRP list pages.
    let tuning = SimTuning {
        mdts: 0,
        ..SimTuning::default()
    };
    let s = sim("chain", 16 * MIB, 4096, tuning);
    let c = DriverConfig {
        max_transfer: 4 << 20,
        queue_depth: 4,
        ..cfg()
    };
    let (ctrl, ns) = up(&s, c).await;
    assert_eq!(ns.geometry().max_transfer, 4 << 20);
    let before = s.stats().commands;
    let mut rng = ChaCha8Rng::seed_from_u64(8);
    let mut data = vec![0u8; 4 * MIB as usize];
    rng.fill(&mut data[..]);
    guard(ns.write(4096 * 5, &data, WriteFlags::FUA))
        .await
        .unwrap();
    assert_eq!(s.stats().commands - before, 1, "one command for 4 MiB");
    let mut back = vec![0u8; data.len()];
    guard(ns.read(4096 * 5, &mut back)).await.unwrap();
    assert!(back == data);
    guard(ctrl.shutdown()).await.unwrap();
    assert_eq!(s.iommu().fault_count(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn polled_mode_without_interrupts() {
    let s = sim("polled", 4 * MIB, 4096, SimTuning::default());
    let c = DriverConfig {
        use_interrupts: false,
        ..cfg()
    };
    let (ctrl, ns) = up(&s, c).await;
    exercise(&ns, 11, 30).await;
    assert_eq!(s.stats().interrupts, 0, "interrupts were not enabled");
    guard(ctrl.shutdown()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn interrupts_are_used() {
    let s = sim("irq", 4 * MIB, 4096, SimTuning::default());
    let (ctrl, ns) = up(&s, cfg()).await;
    exercise(&ns, 12, 10).await;
    assert!(s.stats().interrupts > 0);
    guard(ctrl.shutdown()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_concurrent_commands_across_queue_pairs() {
    let s = sim("conc", 16 * MIB, 512, SimTuning::default());
    let (ctrl, ns) = up(&s, cfg()).await;
    // 128 tasks, each owning a 128 KiB region: write, read back, rewrite, read back.
    let tasks = 128u64;
    let region = 16 * MIB / tasks;
    let mut set = tokio::task::JoinSet::new();
    for t in 0..tasks {
        let ns = ns.clone();
        set.spawn(async move {
            let mut rng = ChaCha8Rng::seed_from_u64(1000 + t);
            for round in 0..4 {
                let len = rng.random_range(1..=(region / 512)) as usize * 512;
                let at = t * region + rng.random_range(0..=(region - len as u64) / 512) * 512;
                let mut data = vec![0u8; len];
                rng.fill(&mut data[..]);
                ns.write(
                    at,
                    &data,
                    WriteFlags {
                        fua: round % 2 == 0,
                    },
                )
                .await
                .unwrap();
                let mut back = vec![0u8; len];
                ns.read(at, &mut back).await.unwrap();
                assert!(back == data, "task {t} round {round}: data mismatch");
            }
        });
    }
    guard(async {
        while let Some(r) = set.join_next().await {
            r.unwrap();
        }
    })
    .await;
    let stats = ctrl.stats();
    assert!(stats[1..].iter().all(|q| q.commands >= 64), "{stats:?}");
    assert_eq!(stats.iter().map(|q| q.errors).sum::<u64>(), 0);
    guard(ctrl.shutdown()).await.unwrap();
    assert_eq!(s.iommu().fault_count(), 0, "{:?}", s.iommu().faults());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_controller_releases_dma_memory() {
    let s = sim("drop", 4 * MIB, 4096, SimTuning::default());
    let (ctrl, ns) = up(&s, cfg()).await;
    exercise(&ns, 13, 5).await;
    assert!(s.iommu().mapping_count() > 0);
    drop(ns);
    drop(ctrl);
    // The supervisor disables the controller, stops the owners and unmaps everything.
    guard(async {
        while s.iommu().mapping_count() > 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tiny_queues_wrap_many_times() {
    // Depth 2 (3-entry rings): 200 concurrent requests wait in the channel, and the
    // rings wrap (and the CQ phase flips) dozens of times.
    let s = sim("tiny", 4 * MIB, 4096, SimTuning::default());
    let c = DriverConfig {
        io_queues: 1,
        queue_depth: 2,
        ..cfg()
    };
    let (ctrl, ns) = up(&s, c).await;
    let mut set = tokio::task::JoinSet::new();
    for t in 0..200u64 {
        let ns = ns.clone();
        set.spawn(async move {
            let mut data = vec![0u8; 4096];
            ChaCha8Rng::seed_from_u64(t).fill(&mut data[..]);
            ns.write(t * 4096, &data, WriteFlags::NONE).await.unwrap();
            let mut back = vec![0u8; 4096];
            ns.read(t * 4096, &mut back).await.unwrap();
            assert!(back == data, "block {t}");
        });
    }
    guard(async {
        while let Some(r) = set.join_next().await {
            r.unwrap();
        }
    })
    .await;
    assert_eq!(ctrl.stats()[1].commands, 400);
    guard(ctrl.shutdown()).await.unwrap();
}
