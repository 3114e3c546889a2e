//! The exerciser over the NVMe driver on the simulated controller: the same run the HIL
//! guest does on QEMU's NVMe, here on both LBA formats, and proof that it catches silent
//! corruption of stored sectors between write and verify.

use ingot_hal::blockdev::BlockDevice;
use ingot_hal::exercise::{self, ExerciseConfig};
use ingot_hal::nvme::driver::{Controller, DriverConfig};
use ingot_hal::sim::{SimConfig, SimController};
use std::sync::Arc;
use std::time::Duration;

const MIB: u64 = 1 << 20;

/// Hang guard only: each run completes in well under a second.
async fn guard<T>(f: impl std::future::Future<Output = T>) -> T {
    tokio::time::timeout(Duration::from_secs(120), f)
        .await
        .expect("operation hung")
}

async fn up(name: &str, lba: u32) -> (Arc<SimController>, Controller, Arc<dyn BlockDevice>) {
    let sim = Arc::new(SimController::new_ram(SimConfig::ram(name, 64 * MIB, lba)).expect("sim"));
    let ctrl = guard(Controller::init(sim.clone(), DriverConfig::default()))
        .await
        .expect("init");
    let ns: Arc<dyn BlockDevice> = Arc::new(ctrl.namespace(1).expect("namespace 1"));
    (sim, ctrl, ns)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exerciser_passes_on_the_simulated_controller_both_lba_formats() {
    for lba in [512, 4096] {
        let (_sim, ctrl, ns) = up(&format!("ex{lba}"), lba).await;
        let cfg = ExerciseConfig {
            bytes: 16 * MIB,
            ..Default::default()
        };
        let r = guard(exercise::run(ns, &cfg)).await.expect("run");
        assert!(r.passed(), "lba {lba}: {r} {:?}", r.errors);
        assert_eq!(r.bytes_read, 16 * MIB);
        let smart = guard(ctrl.smart_log()).await.expect("smart");
        assert!(smart.data_units_written >= u128::from(16 * MIB / 512).div_ceil(1000));
        guard(ctrl.shutdown()).await.expect("shutdown");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn silent_corruption_between_write_and_verify_is_caught() {
    let (sim, ctrl, ns) = up("excorrupt", 4096).await;
    let cfg = ExerciseConfig {
        bytes: 8 * MIB,
        ..Default::default()
    };
    let mut r = guard(exercise::write(ns.clone(), &cfg))
        .await
        .expect("write");
    assert_eq!(r.bytes_written, 8 * MIB);
    // Corrupt the middle block of the fifth planned extent, behind the driver's back.
    let victim = exercise::plan(&r.device, &ns.geometry(), &cfg).expect("plan")[4];
    let slba = victim.offset / 4096 + u64::from(victim.len / 4096) / 2;
    assert_eq!(sim.faults().corrupt_lbas(slba, 1).expect("corrupt"), 1);
    guard(exercise::verify(ns, &cfg, &mut r))
        .await
        .expect("verify");
    assert!(!r.passed());
    assert_eq!(r.mismatches, 1, "{:?}", r.errors);
    assert!(r.errors[0].contains(&format!("extent {}+{}", victim.offset, victim.len)));
    assert_eq!(r.read_errors, 0);
    guard(ctrl.shutdown()).await.expect("shutdown");
}
