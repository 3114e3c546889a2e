//! Register-level tests of the simulated NVMe controller: bring-up, Identify, queues,
//! data through PRPs and PRP lists, phase wrap-around, MDTS, the IOMMU, status codes,
//! logs and shutdown. They drive the controller with the tiny host in `sim_support`.

mod sim_support;

use ingot_hal::backing::DeviceBacking;
use ingot_hal::dma::DmaBuffer;
use ingot_hal::nvme::spec::{
    self, Command, DsmRange, ErrorLogEntry, IdentifyController, IdentifyNamespace, SmartLog, admin,
    cc, cns, csts, feature, io, log, reg, sc, sct,
};
use ingot_hal::sim::{IOVA_BASE, SimConfig};
use sim_support::{Host, build_prps, cmd, pattern, st};

const MIB: u64 = 1 << 20;

fn host(lba: u32) -> Host {
    let mut h = Host::ram(SimConfig::ram("t", 64 * MIB, lba));
    h.create_io_queues(1, 64);
    h
}

#[test]
fn registers_after_creation() {
    let h = Host::ram(SimConfig::ram("regs", 4 * MIB, 512));
    let d = h.dev();
    let cap = spec::Cap(d.read64(reg::CAP));
    assert_eq!(cap.mqes(), 1024);
    assert_eq!(cap.timeout_ms(), 5000);
    assert!(cap.cqr() && cap.css_nvm());
    assert_eq!((cap.mps_min(), cap.mps_max()), (4096, 4096));
    assert_eq!(d.read32(reg::VS), 0x0001_0400);
    assert_eq!(d.read32(reg::CC), cc::standard());
    assert_eq!(d.read32(reg::CSTS), csts::RDY);
    assert_eq!(d.read64(reg::ASQ), h.admin.sq.iova());
    assert!(h.admin.sq.iova() >= IOVA_BASE);
    assert_eq!(d.kind(), ingot_hal::blockdev::DeviceKind::NvmeSim);
    assert_eq!(d.id(), "sim:regs");
    assert!(d.enable_msix(1000).is_err());
}

#[test]
fn identify_controller_namespace_and_list() {
    for lba in [512u32, 4096] {
        let mut h = Host::ram(SimConfig::ram("id", 8 * MIB, lba));
        let (c, b) = h.admin_read(cmd(admin::IDENTIFY, 0, cns::CONTROLLER, 0), 4096);
        assert!(c.is_success());
        let id = IdentifyController::parse(&b);
        assert_eq!(id.serial, "SIM-id");
        assert_eq!(id.model, "Ingot Simulated NVMe");
        assert_eq!((id.mdts, id.nn, id.ver), (5, 1, 0x0001_0400));
        assert!(id.supports_dsm() && id.supports_write_zeroes() && id.vwc & 1 == 1);

        let (c, b) = h.admin_read(cmd(admin::IDENTIFY, 1, cns::NAMESPACE, 0), 4096);
        assert!(c.is_success());
        let ns = IdentifyNamespace::parse(&b);
        assert_eq!(ns.block_size(), Some(lba));
        assert_eq!(ns.nsze, 8 * MIB / u64::from(lba));

        let (c, b) = h.admin_read(cmd(admin::IDENTIFY, 0, cns::ACTIVE_NAMESPACES, 0), 4096);
        assert!(c.is_success());
        assert_eq!(spec::parse_namespace_list(&b), vec![1]);
        let (_, b) = h.admin_read(cmd(admin::IDENTIFY, 1, cns::ACTIVE_NAMESPACES, 0), 4096);
        assert!(spec::parse_namespace_list(&b).is_empty());

        let (c, _) = h.admin_read(cmd(admin::IDENTIFY, 2, cns::NAMESPACE, 0), 4096);
        assert_eq!(st(&c), (sct::GENERIC, sc::INVALID_NAMESPACE));
        assert!(c.dnr());
        let (c, _) = h.admin_read(cmd(admin::IDENTIFY, 0, 0x55, 0), 4096);
        assert_eq!(st(&c), (sct::GENERIC, sc::INVALID_FIELD));
        // Identify data that starts mid-page spills into PRP2.
        let buf = DmaBuffer::alloc(h.mapper.clone(), 8192).unwrap();
        let mut c = cmd(admin::IDENTIFY, 0, cns::CONTROLLER, 0);
        c.prp1 = buf.iova() + 2048;
        c.prp2 = buf.iova() + 4096;
        assert!(h.admin_cmd(c).is_success());
        assert_eq!(
            IdentifyController::parse(&buf.as_slice()[2048..]).serial,
            "SIM-id"
        );
    }
}

#[test]
fn features_and_queue_management_status_codes() {
    let mut h = Host::ram(SimConfig::ram("q", 4 * MIB, 512));
    // Number of Queues: ask for 100 pairs, get the 16 the controller has (0-based 15).
    let c = h.admin_cmd(cmd(
        admin::SET_FEATURES,
        0,
        u32::from(feature::NUMBER_OF_QUEUES),
        (99 << 16) | 99,
    ));
    assert!(c.is_success());
    assert_eq!(c.result, (15 << 16) | 15);
    let c = h.admin_cmd(cmd(
        admin::GET_FEATURES,
        0,
        u32::from(feature::NUMBER_OF_QUEUES),
        0,
    ));
    assert_eq!(c.result, (15 << 16) | 15);
    let c = h.admin_cmd(cmd(
        admin::SET_FEATURES,
        0,
        u32::from(feature::NUMBER_OF_QUEUES),
        0xffff,
    ));
    assert_eq!(st(&c), (sct::GENERIC, sc::INVALID_FIELD));
    // Volatile write cache on by default; can be turned off and read back.
    let c = h.admin_cmd(cmd(
        admin::GET_FEATURES,
        0,
        u32::from(feature::VOLATILE_WRITE_CACHE),
        0,
    ));
    assert_eq!(c.result, 1);
    assert!(
        h.admin_cmd(cmd(
            admin::SET_FEATURES,
            0,
            u32::from(feature::VOLATILE_WRITE_CACHE),
            0
        ))
        .is_success()
    );
    let c = h.admin_cmd(cmd(
        admin::GET_FEATURES,
        0,
        u32::from(feature::VOLATILE_WRITE_CACHE),
        0,
    ));
    assert_eq!(c.result, 0);
    assert!(
        h.admin_cmd(cmd(
            admin::SET_FEATURES,
            0,
            u32::from(feature::INTERRUPT_COALESCING),
            0x0a04
        ))
        .is_success()
    );
    let c = h.admin_cmd(cmd(
        admin::GET_FEATURES,
        0,
        u32::from(feature::INTERRUPT_COALESCING),
        0,
    ));
    assert_eq!(c.result, 0x0a04);
    let c = h.admin_cmd(cmd(admin::SET_FEATURES, 0, 0x7e, 0));
    assert_eq!(st(&c), (sct::GENERIC, sc::INVALID_FIELD));
    let c = h.admin_cmd(cmd(0x7f, 0, 0, 0));
    assert_eq!(st(&c), (sct::GENERIC, sc::INVALID_OPCODE));

    let mem = DmaBuffer::alloc(h.mapper.clone(), 64 * 1024).unwrap();
    let create = |h: &mut Host, op: u8, qid: u32, size: u32, dw11: u32, prp1: u64| {
        let mut c = cmd(op, 0, ((size - 1) << 16) | qid, dw11);
        c.prp1 = prp1;
        h.admin_cmd(c)
    };
    let cs = |c: &spec::Completion| st(c);
    let base = mem.iova();
    // CQ: bad QID, size beyond MQES, size 1, PC=0, bad vector, unaligned base.
    assert_eq!(
        cs(&create(&mut h, admin::CREATE_IO_CQ, 0, 8, 0b11, base)),
        (sct::COMMAND_SPECIFIC, sc::CS_INVALID_QID)
    );
    assert_eq!(
        cs(&create(&mut h, admin::CREATE_IO_CQ, 17, 8, 0b11, base)),
        (sct::COMMAND_SPECIFIC, sc::CS_INVALID_QID)
    );
    assert_eq!(
        cs(&create(&mut h, admin::CREATE_IO_CQ, 1, 1025, 0b11, base)),
        (sct::COMMAND_SPECIFIC, sc::CS_INVALID_QUEUE_SIZE)
    );
    assert_eq!(
        cs(&create(&mut h, admin::CREATE_IO_CQ, 1, 1, 0b11, base)),
        (sct::COMMAND_SPECIFIC, sc::CS_INVALID_QUEUE_SIZE)
    );
    assert_eq!(
        cs(&create(&mut h, admin::CREATE_IO_CQ, 1, 8, 0b10, base)),
        (sct::GENERIC, sc::INVALID_FIELD)
    );
    assert_eq!(
        cs(&create(
            &mut h,
            admin::CREATE_IO_CQ,
            1,
            8,
            (99 << 16) | 0b11,
            base
        )),
        (sct::COMMAND_SPECIFIC, 0x08)
    );
    assert_eq!(
        cs(&create(&mut h, admin::CREATE_IO_CQ, 1, 8, 0b11, base + 64)),
        (sct::GENERIC, sc::INVALID_PRP_OFFSET)
    );
    assert!(create(&mut h, admin::CREATE_IO_CQ, 1, 8, 0b11, base).is_success());
    assert_eq!(
        cs(&create(&mut h, admin::CREATE_IO_CQ, 1, 8, 0b11, base)),
        (sct::COMMAND_SPECIFIC, sc::CS_INVALID_QID)
    );
    // SQ: CQ that does not exist, then fine; Number of Queues is now a sequence error.
    assert_eq!(
        cs(&create(
            &mut h,
            admin::CREATE_IO_SQ,
            1,
            8,
            (5 << 16) | 1,
            base + 4096
        )),
        (sct::COMMAND_SPECIFIC, sc::CS_INVALID_CQ)
    );
    assert_eq!(
        cs(&create(
            &mut h,
            admin::CREATE_IO_SQ,
            1,
            8,
            1 << 16,
            base + 4096
        )),
        (sct::GENERIC, sc::INVALID_FIELD)
    );
    assert!(
        create(
            &mut h,
            admin::CREATE_IO_SQ,
            1,
            8,
            (1 << 16) | 1,
            base + 4096
        )
        .is_success()
    );
    let c = h.admin_cmd(cmd(
        admin::SET_FEATURES,
        0,
        u32::from(feature::NUMBER_OF_QUEUES),
        0,
    ));
    assert_eq!(st(&c), (sct::GENERIC, 0x0c));
    // Delete: CQ still in use, unknown SQ, then in the right order.
    let c = h.admin_cmd(cmd(admin::DELETE_IO_CQ, 0, 1, 0));
    assert_eq!(st(&c), (sct::COMMAND_SPECIFIC, 0x0c));
    let c = h.admin_cmd(cmd(admin::DELETE_IO_SQ, 0, 2, 0));
    assert_eq!(st(&c), (sct::COMMAND_SPECIFIC, sc::CS_INVALID_QID));
    let c = h.admin_cmd(cmd(admin::DELETE_IO_SQ, 0, 0, 0));
    assert_eq!(st(&c), (sct::COMMAND_SPECIFIC, sc::CS_INVALID_QID));
    assert!(h.admin_cmd(cmd(admin::DELETE_IO_SQ, 0, 1, 0)).is_success());
    assert!(h.admin_cmd(cmd(admin::DELETE_IO_CQ, 0, 1, 0)).is_success());
    assert_eq!(h.ctrl.stats().dma_faults, 0);
}

#[test]
fn write_read_through_prps_and_lists() {
    for lba in [512u32, 4096] {
        let mut h = host(lba);
        let bs = lba as usize;
        let mut wbuf = DmaBuffer::alloc(h.mapper.clone(), 256 * 1024).unwrap();
        let rbuf = DmaBuffer::alloc(h.mapper.clone(), 256 * 1024).unwrap();
        // (offset in buffer, blocks): one page, two pages with an offset, a PRP list, full MDTS.
        let cases: [(usize, usize); 5] = [
            (0, 1),
            (if lba == 512 { 512 } else { 0 }, 8192 / bs),
            (0, 3 * 4096 / bs),
            (if lba == 512 { 1024 } else { 0 }, 100 * 1024 / bs),
            (0, 128 * 1024 / bs),
        ];
        let mut slba = 10;
        for (i, &(off, nlb)) in cases.iter().enumerate() {
            let data = pattern(i as u64, nlb * bs);
            wbuf.write_at(off, &data);
            let c = h.rw(io::WRITE, slba, nlb as u32, &wbuf, off);
            assert!(c.is_success(), "write case {i}: {c:?}");
            let c = h.rw(io::READ, slba, nlb as u32, &rbuf, off);
            assert!(c.is_success(), "read case {i}: {c:?}");
            assert_eq!(
                &rbuf.as_slice()[off..off + data.len()],
                &data[..],
                "case {i}"
            );
            slba += nlb as u64 + 3;
        }
        // A PRP list that starts 8 bytes before the end of its page chains to a second list page.
        let data = pattern(99, 64 * 1024);
        wbuf.write_at(0, &data);
        let mut lists = DmaBuffer::alloc(h.mapper.clone(), 8192).unwrap();
        let first_slot = 4096 - 8;
        lists.write_at(first_slot, &(lists.iova() + 4096).to_le_bytes());
        for i in 0..15u64 {
            lists.write_at(
                4096 + 8 * i as usize,
                &(wbuf.iova() + 4096 * (i + 1)).to_le_bytes(),
            );
        }
        let mut c = Command::new(io::WRITE, 1);
        c.prp1 = wbuf.iova();
        c.prp2 = lists.iova() + first_slot as u64;
        c.cdw10 = 5000;
        c.cdw12 = (64 * 1024 / bs as u32) - 1;
        assert!(h.io_cmd(c).is_success());
        let c = h.rw(io::READ, 5000, 64 * 1024 / lba, &rbuf, 0);
        assert!(c.is_success());
        assert_eq!(&rbuf.as_slice()[..data.len()], &data[..]);
        assert_eq!(h.ctrl.stats().dma_faults, 0);
    }
}

#[test]
fn phase_tag_wraps_over_many_laps() {
    let mut h = Host::ram(SimConfig::ram("wrap", 4 * MIB, 512));
    h.create_io_queues(1, 4);
    let mut buf = DmaBuffer::alloc(h.mapper.clone(), 4096).unwrap();
    let rbuf = DmaBuffer::alloc(h.mapper.clone(), 4096).unwrap();
    let mut phases = Vec::new();
    for i in 0..40u64 {
        let data = pattern(i, 512);
        buf.write_at(0, &data);
        let c = h.rw(io::WRITE, i, 1, &buf, 0);
        assert!(c.is_success());
        phases.push(c.phase());
        let c = h.rw(io::READ, i, 1, &rbuf, 0);
        assert!(c.is_success());
        assert_eq!(&rbuf.as_slice()[..512], &data[..]);
    }
    // Queue of 4: phase 1,1,1,1,0,0,0,0,1,... over 10 laps of writes and reads.
    let expected: Vec<bool> = (0..40).map(|i| ((2 * i) / 4) % 2 == 0).collect();
    assert_eq!(phases, expected);
    // Three commands in flight at once on the 4-entry queue (the most it can hold).
    let dev = &*h.ctrl;
    let q = h.io.as_mut().unwrap();
    let cids: Vec<u16> = (0..3)
        .map(|_| q.submit(dev, Command::new(io::FLUSH, 1)))
        .collect();
    let got: Vec<u16> = (0..3).map(|_| q.wait(dev).cid).collect();
    assert_eq!(got, cids);
}

#[test]
fn io_status_codes_mdts_and_prp_rules() {
    let mut h = host(512);
    let buf = DmaBuffer::alloc(h.mapper.clone(), 512 * 1024).unwrap();
    let blocks = 64 * MIB / 512;
    // LBA out of range (end past the namespace, and SLBA+NLB overflow).
    let c = h.rw(io::READ, blocks - 1, 2, &buf, 0);
    assert_eq!(st(&c), (sct::GENERIC, sc::LBA_OUT_OF_RANGE));
    let mut big = Command::new(io::READ, 1);
    big.cdw10 = u32::MAX;
    big.cdw11 = u32::MAX;
    big.prp1 = buf.iova();
    assert_eq!(st(&h.io_cmd(big)), (sct::GENERIC, sc::LBA_OUT_OF_RANGE));
    // MDTS 5 = 128 KiB: 129 KiB is refused, 128 KiB accepted.
    let c = h.rw(io::WRITE, 0, 258, &buf, 0);
    assert_eq!(st(&c), (sct::GENERIC, sc::INVALID_FIELD));
    assert!(c.dnr());
    assert!(h.rw(io::WRITE, 0, 256, &buf, 0).is_success());
    // Invalid namespace, invalid opcode, SGL requested.
    let mut c = Command::new(io::READ, 7);
    c.prp1 = buf.iova();
    assert_eq!(st(&h.io_cmd(c)), (sct::GENERIC, sc::INVALID_NAMESPACE));
    assert_eq!(
        st(&h.io_cmd(Command::new(0x7c, 1))),
        (sct::GENERIC, sc::INVALID_OPCODE)
    );
    let mut c = Command::new(io::READ, 1);
    c.cdw0 |= 1 << 14;
    assert_eq!(st(&h.io_cmd(c)), (sct::GENERIC, sc::INVALID_FIELD));
    // PRP rules: PRP1 not dword aligned; PRP2 (second page) with an offset; list entry with an offset.
    let mut c = Command::new(io::READ, 1);
    c.prp1 = buf.iova() + 2;
    assert_eq!(st(&h.io_cmd(c)), (sct::GENERIC, sc::INVALID_PRP_OFFSET));
    let mut c = Command::new(io::READ, 1);
    c.prp1 = buf.iova();
    c.prp2 = buf.iova() + 4096 + 512;
    c.cdw12 = 15;
    assert_eq!(st(&h.io_cmd(c)), (sct::GENERIC, sc::INVALID_PRP_OFFSET));
    let mut list = DmaBuffer::alloc(h.mapper.clone(), 4096).unwrap();
    list.write_at(0, &(buf.iova() + 4096).to_le_bytes());
    list.write_at(8, &(buf.iova() + 8192 + 8).to_le_bytes());
    let mut c = Command::new(io::READ, 1);
    c.prp1 = buf.iova();
    c.prp2 = list.iova();
    c.cdw12 = 23;
    assert_eq!(st(&h.io_cmd(c)), (sct::GENERIC, sc::INVALID_PRP_OFFSET));
    assert_eq!(h.ctrl.stats().dma_faults, 0);
    // Flush, FUA write, flush-all-namespaces.
    assert!(h.io_cmd(Command::new(io::FLUSH, 1)).is_success());
    assert!(h.io_cmd(Command::new(io::FLUSH, 0xffff_ffff)).is_success());
    let (prp1, _, _) = build_prps(&h.mapper, &buf, 0, 512);
    let mut c = Command::new(io::WRITE, 1);
    c.prp1 = prp1;
    c.cdw12 = io::CDW12_FUA;
    assert!(h.io_cmd(c).is_success());
}

#[test]
fn unmapped_iova_is_a_data_transfer_error_and_a_dma_fault() {
    let mut h = host(512);
    let buf = DmaBuffer::alloc(h.mapper.clone(), 8192).unwrap();
    let host_addr = buf.host_ptr().as_ptr() as u64;
    let stale = {
        let gone = DmaBuffer::alloc(h.mapper.clone(), 4096).unwrap();
        gone.iova()
    };
    for (prp1, prp2, nlb) in [
        (host_addr, 0, 1),                   // identity mapping bug
        (stale, 0, 1),                       // use after unmap
        (buf.iova() + 4096, 0, 16),          // runs past the end of the buffer (single PRP)
        (buf.iova(), buf.iova() + 8192, 16), // PRP2 is the guard page
        (buf.iova(), 0x7_0000_0000, 24),     // PRP list pointer unmapped
    ] {
        for op in [io::READ, io::WRITE] {
            let mut c = Command::new(op, 1);
            c.prp1 = prp1;
            c.prp2 = prp2;
            c.cdw12 = nlb - 1;
            let r = h.io_cmd(c);
            assert_eq!(
                st(&r),
                (sct::GENERIC, sc::DATA_TRANSFER_ERROR),
                "{prp1:#x} {prp2:#x}"
            );
            assert!(!r.dnr());
        }
    }
    let stats = h.ctrl.stats();
    assert_eq!(stats.dma_faults, 10);
    let faults = h.ctrl.iommu().faults();
    assert_eq!(faults.len(), 10);
    assert!(faults.iter().any(|f| f.iova == host_addr));
    // The controller is still healthy.
    assert!(h.rw(io::READ, 0, 16, &buf, 0).is_success());
    assert_eq!(h.ctrl.stats().dma_faults, 10);
}

#[test]
fn write_zeroes_and_deallocate_read_back_zeroes() {
    let mut h = host(4096);
    let mut buf = DmaBuffer::alloc(h.mapper.clone(), 64 * 1024).unwrap();
    buf.write_at(0, &pattern(5, 64 * 1024));
    assert!(h.rw(io::WRITE, 100, 16, &buf, 0).is_success());
    let mut c = Command::new(io::WRITE_ZEROES, 1);
    c.cdw10 = 102;
    c.cdw12 = 1;
    assert!(h.io_cmd(c).is_success());
    let mut ranges = DmaBuffer::alloc(h.mapper.clone(), 4096).unwrap();
    ranges.write_at(
        0,
        &DsmRange {
            attributes: 0,
            nlb: 3,
            slba: 110,
        }
        .to_bytes(),
    );
    ranges.write_at(
        16,
        &DsmRange {
            attributes: 0,
            nlb: 1,
            slba: 115,
        }
        .to_bytes(),
    );
    let mut c = Command::new(io::DATASET_MANAGEMENT, 1);
    c.prp1 = ranges.iova();
    c.cdw10 = 1;
    c.cdw11 = io::DSM_AD;
    assert!(h.io_cmd(c).is_success());
    let rbuf = DmaBuffer::alloc(h.mapper.clone(), 64 * 1024).unwrap();
    assert!(h.rw(io::READ, 100, 16, &rbuf, 0).is_success());
    let orig = pattern(5, 64 * 1024);
    for blk in 0..16usize {
        let got = &rbuf.as_slice()[blk * 4096..(blk + 1) * 4096];
        let zero = matches!(blk, 2 | 3 | 10..=12 | 15);
        if zero {
            assert!(got.iter().all(|&b| b == 0), "block {blk} not zero");
        } else {
            assert_eq!(got, &orig[blk * 4096..(blk + 1) * 4096], "block {blk}");
        }
    }
    // A range past the end is refused and nothing changes.
    ranges.write_at(
        16,
        &DsmRange {
            attributes: 0,
            nlb: 8,
            slba: 64 * MIB / 4096 - 4,
        }
        .to_bytes(),
    );
    let mut c = Command::new(io::DATASET_MANAGEMENT, 1);
    c.prp1 = ranges.iova();
    c.cdw10 = 1;
    c.cdw11 = io::DSM_AD;
    assert_eq!(st(&h.io_cmd(c)), (sct::GENERIC, sc::LBA_OUT_OF_RANGE));
}

#[test]
fn smart_and_error_logs_count_real_work() {
    let mut h = host(512);
    let buf = DmaBuffer::alloc(h.mapper.clone(), 128 * 1024).unwrap();
    for i in 0..3 {
        assert!(h.rw(io::WRITE, i * 256, 256, &buf, 0).is_success());
    }
    assert!(h.rw(io::READ, 0, 8, &buf, 0).is_success());
    let failed = h.rw(io::READ, 64 * MIB, 1, &buf, 0);
    assert!(!failed.is_success() && failed.more());
    let (c, b) = h.admin_read(
        cmd(
            admin::GET_LOG_PAGE,
            0xffff_ffff,
            (127 << 16) | u32::from(log::SMART_HEALTH),
            0,
        ),
        512,
    );
    assert!(c.is_success());
    let s = SmartLog::parse(&b);
    assert_eq!(s.host_write_commands, 3);
    assert_eq!(s.host_read_commands, 1);
    assert_eq!(s.data_units_written, 1); // 768 units of 512 B, rounded up to thousands
    assert_eq!(s.data_units_read, 1);
    assert_eq!(s.error_log_entries, 1);
    assert_eq!(s.temperature_kelvin, 313);
    assert_eq!(s.power_cycles, 0);
    h.ctrl.set_temperature(350);
    let (_, b) = h.admin_read(
        cmd(
            admin::GET_LOG_PAGE,
            0,
            (127 << 16) | u32::from(log::SMART_HEALTH),
            0,
        ),
        512,
    );
    assert_eq!(SmartLog::parse(&b).critical_warning & 2, 2);

    let (c, b) = h.admin_read(
        cmd(
            admin::GET_LOG_PAGE,
            0,
            (1023 << 16) | u32::from(log::ERROR_INFORMATION),
            0,
        ),
        4096,
    );
    assert!(c.is_success());
    let entries = ErrorLogEntry::parse_log(&b);
    assert_eq!(entries.len(), 1);
    assert_eq!(
        (entries[0].sqid, entries[0].cid, entries[0].lba),
        (1, failed.cid, 64 * MIB)
    );
    assert_eq!(
        (entries[0].status >> 1) & 0xff,
        u16::from(sc::LBA_OUT_OF_RANGE)
    );
    // Unknown log page; SMART per namespace not supported; offset past the page.
    let (c, _) = h.admin_read(cmd(admin::GET_LOG_PAGE, 0, (127 << 16) | 0x77, 0), 512);
    assert_eq!(st(&c), (sct::COMMAND_SPECIFIC, sc::CS_INVALID_LOG_PAGE));
    let (c, _) = h.admin_read(cmd(admin::GET_LOG_PAGE, 1, (127 << 16) | 2, 0), 512);
    assert_eq!(st(&c), (sct::GENERIC, sc::INVALID_FIELD));
    let mut off = cmd(admin::GET_LOG_PAGE, 0, (127 << 16) | 2, 0);
    off.cdw12 = 512;
    let (c, _) = h.admin_read(off, 512);
    assert_eq!(st(&c), (sct::GENERIC, sc::INVALID_FIELD));
    // The three admin failures were logged too, newest first.
    let (_, b) = h.admin_read(cmd(admin::GET_LOG_PAGE, 0, (1023 << 16) | 1, 0), 4096);
    let entries = ErrorLogEntry::parse_log(&b);
    assert_eq!(entries.len(), 4);
    assert_eq!(
        entries.iter().map(|e| e.error_count).collect::<Vec<_>>(),
        vec![4, 3, 2, 1]
    );
    assert_eq!(h.ctrl.stats().failed_commands, 4);
}

#[test]
fn reset_drops_io_queues_and_shutdown_completes() {
    let mut h = host(512);
    let buf = DmaBuffer::alloc(h.mapper.clone(), 4096).unwrap();
    assert!(h.rw(io::WRITE, 0, 1, &buf, 0).is_success());
    h.disable();
    assert_eq!(h.dev().read32(reg::CSTS) & csts::RDY, 0);
    h.enable();
    // The old I/O queue is gone: deleting it fails; creating it again works.
    let c = h.admin_cmd(cmd(admin::DELETE_IO_SQ, 0, 1, 0));
    assert_eq!(st(&c), (sct::COMMAND_SPECIFIC, sc::CS_INVALID_QID));
    h.create_io_queues(1, 8);
    assert!(h.rw(io::READ, 0, 1, &buf, 0).is_success());
    h.shutdown();
    assert_eq!(
        h.dev().read32(reg::CSTS) & csts::SHST_MASK,
        csts::SHST_COMPLETE
    );
    h.disable();
    assert_eq!(h.dev().read32(reg::CSTS), 0);
    assert_eq!(h.ctrl.stats().dma_faults, 0);
}

#[test]
fn interrupts_fire_only_for_queues_with_ien() {
    let mut h = host(512);
    let before = h.ctrl.stats().interrupts;
    assert!(h.io_cmd(Command::new(io::FLUSH, 1)).is_success());
    assert!(h.ctrl.stats().interrupts > before);
    // A polled CQ (IEN=0) on queue 2 raises nothing.
    let mut q = sim_support::QueuePair::new(&h.mapper, 2, 8);
    let mut c = cmd(admin::CREATE_IO_CQ, 0, (7 << 16) | 2, 1);
    c.prp1 = q.cq.iova();
    assert!(h.admin_cmd(c).is_success());
    let mut c = cmd(admin::CREATE_IO_SQ, 0, (7 << 16) | 2, (2 << 16) | 1);
    c.prp1 = q.sq.iova();
    assert!(h.admin_cmd(c).is_success());
    let before = h.ctrl.stats().interrupts;
    let dev: &dyn DeviceBacking = &*h.ctrl;
    assert!(q.run(dev, Command::new(io::FLUSH, 1)).is_success());
    assert_eq!(h.ctrl.stats().interrupts, before);
    assert!(!sim_support::wait_eventfd(
        &h.vectors[2],
        std::time::Duration::ZERO
    ));
}

#[test]
fn a_full_completion_queue_holds_back_completions_until_the_head_moves() {
    let mut h = host(512);
    // A 2-entry CQ holds one completion; its SQ has 8 entries.
    let mut q = sim_support::QueuePair::new(&h.mapper, 3, 8);
    let cq = DmaBuffer::alloc(h.mapper.clone(), 4096).unwrap();
    let mut c = cmd(admin::CREATE_IO_CQ, 0, (1 << 16) | 3, 1);
    c.prp1 = cq.iova();
    assert!(h.admin_cmd(c).is_success());
    let mut c = cmd(admin::CREATE_IO_SQ, 0, (7 << 16) | 3, (3 << 16) | 1);
    c.prp1 = q.sq.iova();
    assert!(h.admin_cmd(c).is_success());
    q.cq = cq;
    q.size = 8; // SQ ring size; the CQ ring is handled by hand below
    let dev: &dyn DeviceBacking = &*h.ctrl;
    let cids: Vec<u16> = (0..4)
        .map(|_| q.submit(dev, Command::new(io::FLUSH, 1)))
        .collect();
    let mut seen = Vec::new();
    let mut head = 0u16;
    let mut phase = true;
    while seen.len() < 4 {
        let off = usize::from(head) * spec::CQE_SIZE;
        let mut b = [0u8; spec::CQE_SIZE];
        sim_support::wait_for("a completion", || {
            q.cq.read_volatile(off, &mut b);
            spec::Completion::from_bytes(&b).phase() == phase
        });
        let e = spec::Completion::from_bytes(&b);
        seen.push(e.cid);
        head = (head + 1) % 2;
        if head == 0 {
            phase = !phase;
        }
        // Nothing more can be posted until the head doorbell frees the slot: the other
        // slot still carries the old phase.
        let other = usize::from(head) * spec::CQE_SIZE;
        let mut o = [0u8; spec::CQE_SIZE];
        q.cq.read_volatile(other, &mut o);
        assert_ne!(spec::Completion::from_bytes(&o).phase(), phase);
        dev.write32(reg::cq_head_doorbell(3, 0), u32::from(head));
    }
    assert_eq!(seen, cids);
}

#[test]
fn log_pages_read_past_their_end_as_zeroes() {
    let mut h = Host::ram(SimConfig::ram("pad", 4 * MIB, 512));
    let mut buf = DmaBuffer::alloc(h.mapper.clone(), 8192).unwrap();
    buf.as_mut_slice().fill(0xee);
    // 6 KiB of the 512-byte SMART log from offset 4, starting mid-page (PRP1 + PRP2).
    let mut c = cmd(admin::GET_LOG_PAGE, 0, ((6144 / 4 - 1) << 16) | 2, 0);
    c.cdw12 = 4;
    c.prp1 = buf.iova() + 1024;
    c.prp2 = buf.iova() + 4096;
    assert!(h.admin_cmd(c).is_success());
    let b = buf.as_slice();
    assert!(b[..1024].iter().all(|&x| x == 0xee));
    assert_eq!(b[1024], 10, "available spare threshold (byte 4 of the log)");
    assert!(b[1024 + 508..1024 + 6144].iter().all(|&x| x == 0));
    assert!(b[1024 + 6144..].iter().all(|&x| x == 0xee));
}
