//! Persistent simulated drives: data and health survive a power cycle, unsafe shutdowns
//! are counted, a drive opens once, and broken sidecars give clear errors.

mod sim_support;

use ingot_hal::dma::DmaBuffer;
use ingot_hal::nvme::spec::{IdentifyController, SmartLog, admin, cns, io};
use ingot_hal::sim::{SimController, SimDrive, SimError, create_drives, list_drives};
use sim_support::{Host, cmd, pattern};
use std::os::unix::fs::MetadataExt;
use std::sync::Arc;

fn smart(h: &mut Host) -> SmartLog {
    let (c, b) = h.admin_read(cmd(admin::GET_LOG_PAGE, 0, (127 << 16) | 2, 0), 512);
    assert!(c.is_success());
    SmartLog::parse(&b)
}

#[test]
fn data_and_health_survive_power_cycles() {
    let dir = tempfile::tempdir().unwrap();
    let drives = create_drives(dir.path(), 2, 8 << 20, 4096).unwrap();
    assert_eq!(drives.len(), 2);
    assert_ne!(drives[0].meta.serial, drives[1].meta.serial);
    let listed: Vec<SimDrive> = list_drives(dir.path())
        .unwrap()
        .into_iter()
        .map(Result::unwrap)
        .collect();
    assert_eq!(listed, drives);
    let path = drives[0].data_path.clone();

    // Session 1: write, shut down cleanly.
    let ctrl = Arc::new(SimController::open(&path).unwrap());
    assert!(matches!(
        SimController::open(&path),
        Err(SimError::InUse { .. })
    ));
    let mut h = Host::attach(ctrl);
    h.create_io_queues(1, 16);
    let (_, b) = h.admin_read(cmd(admin::IDENTIFY, 0, cns::CONTROLLER, 0), 4096);
    assert_eq!(IdentifyController::parse(&b).serial, drives[0].meta.serial);
    let mut buf = DmaBuffer::alloc(h.mapper.clone(), 64 * 1024).unwrap();
    buf.write_at(0, &pattern(21, 64 * 1024));
    assert!(h.rw(io::WRITE, 300, 16, &buf, 0).is_success());
    let s = smart(&mut h);
    assert_eq!(
        (s.power_cycles, s.unsafe_shutdowns, s.host_write_commands),
        (1, 0, 1)
    );
    h.shutdown();
    drop(h);

    // Session 2: the data is there; then end without a shutdown notification.
    let mut h = Host::attach(Arc::new(SimController::open(&path).unwrap()));
    h.create_io_queues(1, 16);
    let rbuf = DmaBuffer::alloc(h.mapper.clone(), 64 * 1024).unwrap();
    assert!(h.rw(io::READ, 300, 16, &rbuf, 0).is_success());
    assert_eq!(rbuf.as_slice(), &pattern(21, 64 * 1024)[..]);
    let s = smart(&mut h);
    assert_eq!(
        (s.power_cycles, s.unsafe_shutdowns, s.host_write_commands),
        (2, 0, 1)
    );
    // Deallocate punches a hole in the sparse file.
    let blocks_before = std::fs::metadata(&path).unwrap().blocks();
    let mut c = ingot_hal::nvme::spec::Command::new(io::WRITE_ZEROES, 1);
    c.cdw10 = 300;
    c.cdw12 = 15 | ingot_hal::nvme::spec::io::CDW12_DEAC;
    assert!(h.io_cmd(c).is_success());
    assert!(std::fs::metadata(&path).unwrap().blocks() < blocks_before);
    drop(h);

    // Session 3 sees the unsafe shutdown.
    let mut h = Host::attach(Arc::new(SimController::open(&path).unwrap()));
    let s = smart(&mut h);
    assert_eq!((s.power_cycles, s.unsafe_shutdowns), (3, 1));
    assert_eq!(h.ctrl.stats().dma_faults, 0);
}

#[test]
fn broken_drives_give_clear_errors() {
    let dir = tempfile::tempdir().unwrap();
    let good = SimDrive::create(&dir.path().join("good"), 1 << 20, 512, "GOOD1").unwrap();
    let text = std::fs::read_to_string(&good.sidecar_path).unwrap();
    let cases: [(&str, String); 5] = [
        ("garbage", "\u{0}\u{1}not json".to_string()),
        ("empty", String::new()),
        (
            "lba",
            text.replace("\"lba_size\": 512", "\"lba_size\": 1000"),
        ),
        ("format", text.replace("ingot-sim-nvme/1", "something-else")),
        ("size", text.replace("1048576", "2097152")),
    ];
    for (name, body) in &cases {
        std::fs::copy(&good.data_path, dir.path().join(format!("{name}.img"))).unwrap();
        std::fs::write(dir.path().join(format!("{name}.json")), body).unwrap();
        let err = SimController::open(&dir.path().join(name)).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains(&format!("{name}.")), "{name}: {msg}");
    }
    // Sidecar without a data file.
    std::fs::copy(&good.sidecar_path, dir.path().join("orphan.json")).unwrap();
    assert!(matches!(
        SimController::open(&dir.path().join("orphan")),
        Err(SimError::Io { .. })
    ));
    let listed = list_drives(dir.path()).unwrap();
    assert_eq!(listed.len(), 7);
    assert_eq!(listed.iter().filter(|r| r.is_ok()).count(), 1);
    assert!(list_drives(&dir.path().join("missing")).is_err());
}
