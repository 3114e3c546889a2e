//! The NVMe driver against the simulated controller: bring-up, data integrity over both
//! LBA sizes and transfers beyond MDTS, health, shutdown, and recovery from injected
//! faults. Every healthy run must leave zero DMA faults in the simulated IOMMU.

use ingot_hal::backing::DeviceBacking;
use ingot_hal::blockdev::{BlockDevice, BlockError, WriteFlags};
use ingot_hal::nvme::driver::{Controller, DriverConfig};
use ingot_hal::nvme::spec::{csts, io, reg, sc, sct};
use ingot_hal::sim::{CommandMatch, FaultCount, SimConfig, SimController};
use rand::{Rng, RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::sync::Arc;
use std::time::Duration;

fn sim(lba: u32) -> Arc<SimController> {
    Arc::new(SimController::new_ram(SimConfig::ram("drv", 32 << 20, lba)).unwrap())
}

fn fast_recovery() -> DriverConfig {
    DriverConfig {
        command_timeout: Duration::from_millis(300),
        ..DriverConfig::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_runs_on_the_sim_with_no_dma_faults() {
    for lba in [512u32, 4096] {
        let s = sim(lba);
        let ctrl = Controller::init(s.clone(), DriverConfig::default())
            .await
            .unwrap();
        assert_eq!(ctrl.identify().model, "Ingot Simulated NVMe");
        let ns = ctrl.namespace(1).unwrap();
        let g = ns.geometry();
        assert_eq!((g.block_size, g.capacity()), (lba, 32 << 20));
        let mut rng = ChaCha8Rng::seed_from_u64(u64::from(lba));
        let bs = u64::from(lba);
        let mut model = vec![0u8; 32 << 20];
        for i in 0..40 {
            // Sizes from one block to 640 KiB (several MDTS-sized commands).
            let blocks = rng.random_range(1..=(640 * 1024 / bs));
            let start = rng.random_range(0..(g.blocks - blocks));
            let mut data = vec![0u8; (blocks * bs) as usize];
            rng.fill_bytes(&mut data);
            let flags = if i % 3 == 0 {
                WriteFlags::FUA
            } else {
                WriteFlags::NONE
            };
            ns.write(start * bs, &data, flags).await.unwrap();
            model[(start * bs) as usize..][..data.len()].copy_from_slice(&data);
            let mut back = vec![0u8; data.len()];
            ns.read(start * bs, &mut back).await.unwrap();
            assert!(back == data, "round trip {i}");
        }
        ns.flush().await.unwrap();
        ns.deallocate(0, 64 * 1024).await.unwrap();
        ns.write_zeroes(1 << 20, 256 * 1024).await.unwrap();
        model[..64 * 1024].fill(0);
        model[1 << 20..(1 << 20) + 256 * 1024].fill(0);
        let mut all = vec![0u8; 32 << 20];
        ns.read(0, &mut all).await.unwrap();
        assert!(all == model, "whole-device read matches the model");
        let h = ns.health().await.unwrap();
        assert!(h.data_units_written > 0 && h.data_units_read > 0);
        assert!(matches!(
            ns.read(32 << 20, &mut [0u8; 4096][..lba as usize]).await,
            Err(BlockError::OutOfRange { .. })
        ));
        ctrl.shutdown().await.unwrap();
        assert_eq!(s.read32(reg::CSTS) & csts::SHST_MASK, csts::SHST_COMPLETE);
        assert_eq!(
            s.stats().dma_faults,
            0,
            "DMA faults: {:?}",
            s.iommu().faults()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_recovers_from_delay_and_lost_completion() {
    let s = sim(512);
    let ctrl = Controller::init(s.clone(), fast_recovery()).await.unwrap();
    let ns = ctrl.namespace(1).unwrap();
    let faults = s.faults();
    let data = vec![0x5au8; 8192];

    // Delayed far beyond the timeout: the driver aborts it and reissues.
    faults.delay(
        CommandMatch::io(io::WRITE),
        Duration::from_secs(3600),
        FaultCount::Times(1),
    );
    ns.write(4096, &data, WriteFlags::NONE).await.unwrap();
    let mut back = vec![0u8; 8192];
    ns.read(4096, &mut back).await.unwrap();
    assert_eq!(back, data);
    assert_eq!(faults.counters().delayed, 1);
    // The held write came back through Abort (Command Abort Requested in the error log).
    let log = ctrl.error_log().await.unwrap();
    assert!(
        log.iter()
            .any(|e| (e.status >> 1) & 0xff == u16::from(sc::ABORT_REQUESTED)),
        "{log:?}"
    );

    // Completion lost: Abort finds nothing, the driver resets and reissues.
    faults.lose_completions(CommandMatch::io(io::READ), FaultCount::Times(1));
    let mut back = vec![0u8; 8192];
    ns.read(4096, &mut back).await.unwrap();
    assert_eq!(back, data);
    assert_eq!(faults.counters().lost_completions, 1);
    assert_eq!(
        s.stats().dma_faults,
        0,
        "DMA faults: {:?}",
        s.iommu().faults()
    );
    ctrl.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn driver_reports_errors_fatal_status_and_removal() {
    let s = sim(4096);
    let ctrl = Controller::init(s.clone(), fast_recovery()).await.unwrap();
    let ns = ctrl.namespace(1).unwrap();
    let faults = s.faults();
    faults.error_status(
        CommandMatch::io(io::READ).with_lbas(10..11),
        sct::MEDIA,
        sc::MEDIA_UNRECOVERED_READ,
        FaultCount::Always,
    );
    let mut buf = vec![0u8; 4096];
    match ns.read(10 * 4096, &mut buf).await {
        Err(BlockError::Nvme { status, .. }) => {
            assert_eq!(
                (status.sct, status.sc),
                (sct::MEDIA, sc::MEDIA_UNRECOVERED_READ)
            );
        }
        other => panic!("expected a media error, got {other:?}"),
    }
    ns.read(11 * 4096, &mut buf).await.unwrap();
    let h = ns.health().await.unwrap();
    assert!(h.media_errors >= 1);
    let log = ctrl.error_log().await.unwrap();
    assert!(log.iter().any(|e| e.lba == 10));

    faults.controller_fatal();
    let r = ns.read(0, &mut buf).await;
    assert!(matches!(r, Err(BlockError::DeviceLost { .. })), "{r:?}");
    drop(ns);
    drop(ctrl);

    let s = sim(512);
    let ctrl = Controller::init(s.clone(), fast_recovery()).await.unwrap();
    let ns = ctrl.namespace(1).unwrap();
    s.faults().surprise_removal(true);
    let r = ns.write(0, &[1u8; 512], WriteFlags::NONE).await;
    assert!(matches!(r, Err(BlockError::DeviceLost { .. })), "{r:?}");
    assert_eq!(s.stats().dma_faults, 0);
}
