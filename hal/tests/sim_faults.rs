//! Fault injection in the simulated NVMe controller, each fault observed at the register level.

mod sim_support;

use ingot_hal::backing::DeviceBacking;
use ingot_hal::dma::DmaBuffer;
use ingot_hal::nvme::spec::{
    self, Command, ErrorLogEntry, SmartLog, admin, csts, io, reg, sc, sct,
};
use ingot_hal::sim::{CommandMatch, FaultCount, SimConfig};
use sim_support::{Host, cmd, pattern, st, wait_eventfd};
use std::time::Duration;

fn host() -> Host {
    let mut h = Host::ram(SimConfig::ram("f", 16 << 20, 512));
    h.create_io_queues(1, 32);
    h
}

#[test]
fn error_status_on_matching_opcode_and_lba_range() {
    let mut h = host();
    let faults = h.ctrl.faults();
    let buf = DmaBuffer::alloc(h.mapper.clone(), 8192).unwrap();
    faults.error_status(
        CommandMatch::io(io::READ).with_lbas(100..200),
        sct::MEDIA,
        sc::MEDIA_UNRECOVERED_READ,
        FaultCount::Times(2),
    );
    // Outside the range, and writes in the range, are untouched.
    assert!(h.rw(io::READ, 0, 8, &buf, 0).is_success());
    assert!(h.rw(io::WRITE, 150, 8, &buf, 0).is_success());
    // Overlapping reads fail twice, then the rule is spent.
    let a = h.rw(io::READ, 95, 8, &buf, 0);
    assert_eq!(st(&a), (sct::MEDIA, sc::MEDIA_UNRECOVERED_READ));
    assert!(!a.dnr());
    assert_eq!(
        st(&h.rw(io::READ, 199, 1, &buf, 0)),
        (sct::MEDIA, sc::MEDIA_UNRECOVERED_READ)
    );
    assert!(h.rw(io::READ, 150, 8, &buf, 0).is_success());
    assert_eq!(faults.counters().status_injected, 2);
    // SMART counts media errors; the error log names the command and LBA.
    let (_, b) = h.admin_read(cmd(admin::GET_LOG_PAGE, 0, (127 << 16) | 2, 0), 512);
    assert_eq!(SmartLog::parse(&b).media_errors, 2);
    let (_, b) = h.admin_read(cmd(admin::GET_LOG_PAGE, 0, (1023 << 16) | 1, 0), 4096);
    let e = ErrorLogEntry::parse_log(&b);
    assert_eq!((e[1].cid, e[1].lba, e[1].sqid), (a.cid, 95, 1));

    // "Always" on an admin opcode until cleared.
    faults.error_status(
        CommandMatch::admin(admin::GET_FEATURES),
        sct::GENERIC,
        sc::INTERNAL_ERROR,
        FaultCount::Always,
    );
    for _ in 0..3 {
        let c = h.admin_cmd(cmd(admin::GET_FEATURES, 0, 7, 0));
        assert_eq!(st(&c), (sct::GENERIC, sc::INTERNAL_ERROR));
    }
    faults.clear();
    assert!(h.admin_cmd(cmd(admin::GET_FEATURES, 0, 7, 0)).is_success());
    assert_eq!(h.ctrl.stats().dma_faults, 0);
}

#[test]
fn delayed_command_is_abortable_and_otherwise_completes_late() {
    let mut h = host();
    let faults = h.ctrl.faults();
    let mut buf = DmaBuffer::alloc(h.mapper.clone(), 4096).unwrap();
    buf.write_at(0, &pattern(1, 512));
    // Held for an hour: a later command overtakes it; Abort takes it back.
    faults.delay(
        CommandMatch::io(io::WRITE),
        Duration::from_secs(3600),
        FaultCount::Times(1),
    );
    let ctrl = h.ctrl.clone();
    let dev: &dyn DeviceBacking = &*ctrl;
    let mut c = Command::new(io::WRITE, 1);
    c.prp1 = buf.iova();
    c.cdw10 = 7;
    let q = h.io.as_mut().unwrap();
    let held = q.submit(dev, c);
    let flush = q.submit(dev, Command::new(io::FLUSH, 1));
    assert_eq!(q.wait(dev).cid, flush);
    let ab = h.admin_cmd(cmd(admin::ABORT, 0, (u32::from(held) << 16) | 1, 0));
    assert!(ab.is_success());
    assert_eq!(ab.result & 1, 0, "DW0 bit 0 clear: the command was aborted");
    let q = h.io.as_mut().unwrap();
    let aborted = q.wait(dev);
    assert_eq!(aborted.cid, held);
    assert_eq!(st(&aborted), (sct::GENERIC, sc::ABORT_REQUESTED));
    // The aborted write never happened.
    let rbuf = DmaBuffer::alloc(h.mapper.clone(), 4096).unwrap();
    assert!(h.rw(io::READ, 7, 1, &rbuf, 0).is_success());
    assert!(rbuf.as_slice()[..512].iter().all(|&b| b == 0));
    // Abort of a command that is not outstanding: DW0 bit 0 set.
    let ab = h.admin_cmd(cmd(admin::ABORT, 0, (999 << 16) | 1, 0));
    assert!(ab.is_success());
    assert_eq!(ab.result & 1, 1);

    // A short delay completes by itself, with the write applied.
    faults.delay(
        CommandMatch::io(io::WRITE),
        Duration::from_millis(20),
        FaultCount::Times(1),
    );
    assert!(h.rw(io::WRITE, 7, 1, &buf, 0).is_success());
    assert!(h.rw(io::READ, 7, 1, &rbuf, 0).is_success());
    assert_eq!(&rbuf.as_slice()[..512], &pattern(1, 512)[..]);
    assert_eq!(faults.counters().delayed, 2);
}

#[test]
fn deleting_an_sq_aborts_its_held_commands() {
    let mut h = host();
    h.ctrl.faults().delay(
        CommandMatch::io(io::FLUSH),
        Duration::from_secs(3600),
        FaultCount::Always,
    );
    let ctrl = h.ctrl.clone();
    let dev: &dyn DeviceBacking = &*ctrl;
    let q = h.io.as_mut().unwrap();
    let held = q.submit(dev, Command::new(io::FLUSH, 1));
    // Commands are fetched in order: once a later read completes, the flush is held.
    let buf = DmaBuffer::alloc(h.mapper.clone(), 4096).unwrap();
    let mut rd = Command::new(io::READ, 1);
    rd.prp1 = buf.iova();
    assert!(q.run(dev, rd).is_success());
    let r = h.admin_cmd(cmd(admin::DELETE_IO_SQ, 0, 1, 0));
    assert!(r.is_success());
    let q = h.io.as_mut().unwrap();
    let c = q.wait(dev);
    assert_eq!(
        (c.cid, st(&c)),
        (held, (sct::GENERIC, sc::ABORTED_SQ_DELETION))
    );
}

#[test]
fn lost_completion_is_executed_but_never_posted() {
    let mut h = host();
    let faults = h.ctrl.faults();
    let mut buf = DmaBuffer::alloc(h.mapper.clone(), 4096).unwrap();
    buf.write_at(0, &pattern(3, 512));
    faults.lose_completions(CommandMatch::io(io::WRITE), FaultCount::Times(1));
    let ctrl = h.ctrl.clone();
    let dev: &dyn DeviceBacking = &*ctrl;
    let mut c = Command::new(io::WRITE, 1);
    c.prp1 = buf.iova();
    c.cdw10 = 3;
    let q = h.io.as_mut().unwrap();
    let lost = q.submit(dev, c);
    let next = q.submit(dev, Command::new(io::FLUSH, 1));
    // Commands on one SQ run in order: when the flush completes, the write has run.
    let got = q.wait(dev);
    assert_eq!(got.cid, next);
    assert_ne!(got.cid, lost);
    assert!(q.poll().is_none());
    assert_eq!(faults.counters().lost_completions, 1);
    let ab = h.admin_cmd(cmd(admin::ABORT, 0, (u32::from(lost) << 16) | 1, 0));
    assert_eq!(ab.result & 1, 1, "a lost command is not outstanding");
    let rbuf = DmaBuffer::alloc(h.mapper.clone(), 4096).unwrap();
    assert!(h.rw(io::READ, 3, 1, &rbuf, 0).is_success());
    assert_eq!(&rbuf.as_slice()[..512], &pattern(3, 512)[..]);
}

#[test]
fn controller_fatal_stops_processing_until_cleared() {
    let mut h = host();
    let faults = h.ctrl.faults();
    faults.controller_fatal();
    let d = h.dev();
    assert_ne!(d.read32(reg::CSTS) & csts::CFS, 0);
    // A command submitted now is not processed; a reset does not clear an injected CFS
    // and the controller does not become ready.
    let ctrl = h.ctrl.clone();
    let dev: &dyn DeviceBacking = &*ctrl;
    let q = h.io.as_mut().unwrap();
    q.submit(dev, Command::new(io::FLUSH, 1));
    dev.write32(reg::CC, 0);
    sim_support::wait_for("RDY=0", || dev.read32(reg::CSTS) & csts::RDY == 0);
    dev.write32(reg::CC, spec::cc::standard());
    assert_ne!(dev.read32(reg::CSTS) & csts::CFS, 0);
    assert_eq!(faults.counters().fatal, 1);
    faults.clear();
    assert_eq!(dev.read32(reg::CSTS) & csts::CFS, 0);
    h.disable();
    h.enable();
    h.create_io_queues(1, 8);
    assert!(h.io_cmd(Command::new(io::FLUSH, 1)).is_success());
}

#[test]
fn surprise_removal_reads_all_ones_and_signals_notice() {
    let mut h = host();
    let faults = h.ctrl.faults();
    let ctrl = h.ctrl.clone();
    let removal = h.ctrl.removal_request().unwrap();
    assert!(!wait_eventfd(&removal, Duration::ZERO));
    faults.surprise_removal(true);
    assert!(wait_eventfd(&removal, Duration::ZERO));
    let d: &dyn DeviceBacking = &*ctrl;
    for off in [reg::CAP, reg::VS, reg::CC, reg::CSTS, 0x1000] {
        assert_eq!(d.read32(off), u32::MAX);
    }
    assert_eq!(d.read64(reg::CAP), u64::MAX);
    let before = h.ctrl.stats().commands;
    // Doorbell writes go nowhere while the device is gone.
    let dev: &dyn DeviceBacking = &*ctrl;
    h.io.as_mut()
        .unwrap()
        .submit(dev, Command::new(io::FLUSH, 1));
    assert_eq!(h.ctrl.stats().commands, before);
    assert_eq!(faults.counters().removals, 1);
    // Re-inserted: state was kept; the next doorbell write carries both commands.
    faults.clear();
    assert_eq!(d.read32(reg::VS), 0x0001_0400);
    let q = h.io.as_mut().unwrap();
    q.submit(dev, Command::new(io::FLUSH, 1));
    assert!(q.wait(dev).is_success());
    assert!(q.wait(dev).is_success());
    // Removal without notice leaves the eventfd quiet.
    faults.surprise_removal(false);
    assert!(!wait_eventfd(&removal, Duration::ZERO));
    assert_eq!(d.read32(reg::CSTS), u32::MAX);
}

#[test]
fn silent_corruption_flips_one_bit_per_sector() {
    let mut h = host();
    let faults = h.ctrl.faults();
    let mut buf = DmaBuffer::alloc(h.mapper.clone(), 8192).unwrap();
    let data = pattern(11, 8192);
    buf.write_at(0, &data);
    assert!(h.rw(io::WRITE, 40, 16, &buf, 0).is_success());
    assert_eq!(faults.corrupt_lbas(42, 3).unwrap(), 3);
    assert!(faults.corrupt_lbas(16 << 11, 1).is_err());
    let rbuf = DmaBuffer::alloc(h.mapper.clone(), 8192).unwrap();
    let c = h.rw(io::READ, 40, 16, &rbuf, 0);
    assert!(c.is_success(), "corruption is silent");
    for blk in 0..16 {
        let diff: u32 = rbuf.as_slice()[blk * 512..(blk + 1) * 512]
            .iter()
            .zip(&data[blk * 512..(blk + 1) * 512])
            .map(|(a, b)| (a ^ b).count_ones())
            .sum();
        assert_eq!(diff, u32::from((2..5).contains(&blk)), "block {blk}");
    }
    assert_eq!(faults.counters().corrupted_sectors, 3);
    assert_eq!(h.ctrl.stats().dma_faults, 0);
}

#[test]
fn async_event_requests_are_held_and_abortable() {
    let mut h = host();
    let ctrl = h.ctrl.clone();
    let dev: &dyn DeviceBacking = &*ctrl;
    let aer = h
        .admin
        .submit(dev, cmd(admin::ASYNC_EVENT_REQUEST, 0, 0, 0));
    // Held: the next admin command completes first.
    let c = h.admin_cmd(cmd(admin::GET_FEATURES, 0, 7, 0));
    assert!(c.is_success());
    // An invalid doorbell value completes it with an error event for the error log page.
    dev.write32(reg::sq_tail_doorbell(1, 0), 999);
    let ev = h.admin.wait(dev);
    assert_eq!(ev.cid, aer);
    assert!(ev.is_success());
    assert_eq!(ev.result & 0x7, 0);
    assert_eq!((ev.result >> 16) & 0xff, 1);
    dev.write32(reg::sq_tail_doorbell(1, 0), u32::from(h.io().sq_tail));
    // Over-temperature raises a SMART/health event (type 1, info 01h, log page 02h), once.
    let aer = h
        .admin
        .submit(dev, cmd(admin::ASYNC_EVENT_REQUEST, 0, 0, 0));
    h.ctrl.set_temperature(330);
    h.ctrl.set_temperature(350);
    h.ctrl.set_temperature(355);
    let ev = h.admin.wait(dev);
    assert_eq!((ev.cid, ev.result), (aer, 1 | (1 << 8) | (2 << 16)));
    let aer = h
        .admin
        .submit(dev, cmd(admin::ASYNC_EVENT_REQUEST, 0, 0, 0));
    let ab = h
        .admin
        .submit(dev, cmd(admin::ABORT, 0, u32::from(aer) << 16, 0));
    let first = h.admin.wait(dev);
    let second = h.admin.wait(dev);
    let (aborted, abort) = if first.cid == aer {
        (first, second)
    } else {
        (second, first)
    };
    assert_eq!(abort.cid, ab);
    assert_eq!(st(&aborted), (sct::GENERIC, sc::ABORT_REQUESTED));
    assert_eq!(abort.result & 1, 0);
    assert!(h.io_cmd(Command::new(io::FLUSH, 1)).is_success());
}
