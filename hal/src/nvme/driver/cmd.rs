//! Encoding of every admin and I/O command the driver sends (CID and PRPs set later).

use crate::nvme::spec::{Command, admin, cns, feature, io};

/// Identify with `cns` for `nsid`, data into the page at `prp1`.
pub fn identify(cns_v: u32, nsid: u32, prp1: u64) -> Command {
    let mut c = Command::new(admin::IDENTIFY, nsid);
    c.prp1 = prp1;
    c.cdw10 = cns_v;
    c
}

/// Identify Controller.
pub fn identify_controller(prp1: u64) -> Command {
    identify(cns::CONTROLLER, 0, prp1)
}

/// Active namespace ID list starting after nsid 0.
pub fn identify_active_namespaces(prp1: u64) -> Command {
    identify(cns::ACTIVE_NAMESPACES, 0, prp1)
}

/// Identify Namespace `nsid`.
pub fn identify_namespace(nsid: u32, prp1: u64) -> Command {
    identify(cns::NAMESPACE, nsid, prp1)
}

/// Set Features / Number of Queues: `nsq` submission and `ncq` completion queues (1-based).
pub fn set_number_of_queues(nsq: u16, ncq: u16) -> Command {
    let mut c = Command::new(admin::SET_FEATURES, 0);
    c.cdw10 = u32::from(feature::NUMBER_OF_QUEUES);
    c.cdw11 = u32::from(nsq.saturating_sub(1)) | (u32::from(ncq.saturating_sub(1)) << 16);
    c
}

/// Create I/O Completion Queue `qid` of `entries` at `iova`, physically contiguous,
/// interrupts on `vector` or disabled.
pub fn create_io_cq(qid: u16, entries: u16, iova: u64, vector: Option<u16>) -> Command {
    let mut c = Command::new(admin::CREATE_IO_CQ, 0);
    c.prp1 = iova;
    c.cdw10 = u32::from(qid) | (u32::from(entries - 1) << 16);
    c.cdw11 = 1 | vector.map_or(0, |v| 0b10 | (u32::from(v) << 16));
    c
}

/// Create I/O Submission Queue `qid` of `entries` at `iova`, completing to `cqid`.
pub fn create_io_sq(qid: u16, entries: u16, iova: u64, cqid: u16) -> Command {
    let mut c = Command::new(admin::CREATE_IO_SQ, 0);
    c.prp1 = iova;
    c.cdw10 = u32::from(qid) | (u32::from(entries - 1) << 16);
    c.cdw11 = 1 | (u32::from(cqid) << 16);
    c
}

/// Delete I/O Submission Queue `qid`.
pub fn delete_io_sq(qid: u16) -> Command {
    let mut c = Command::new(admin::DELETE_IO_SQ, 0);
    c.cdw10 = u32::from(qid);
    c
}

/// Delete I/O Completion Queue `qid`.
pub fn delete_io_cq(qid: u16) -> Command {
    let mut c = Command::new(admin::DELETE_IO_CQ, 0);
    c.cdw10 = u32::from(qid);
    c
}

/// Get Log Page `lid` for `nsid`, `len` bytes (a multiple of 4) into `prp1` (one page).
pub fn get_log_page(lid: u8, nsid: u32, len: usize, prp1: u64) -> Command {
    let numd = (len / 4).saturating_sub(1) as u32;
    let mut c = Command::new(admin::GET_LOG_PAGE, nsid);
    c.prp1 = prp1;
    c.cdw10 = u32::from(lid) | ((numd & 0xffff) << 16);
    c.cdw11 = numd >> 16;
    c
}

/// Abort command `cid` on submission queue `sqid`.
pub fn abort(sqid: u16, cid: u16) -> Command {
    let mut c = Command::new(admin::ABORT, 0);
    c.cdw10 = u32::from(sqid) | (u32::from(cid) << 16);
    c
}

fn rw(opcode: u8, nsid: u32, slba: u64, nlb: u32, fua: bool) -> Command {
    let mut c = Command::new(opcode, nsid);
    c.cdw10 = slba as u32;
    c.cdw11 = (slba >> 32) as u32;
    c.cdw12 = (nlb - 1) & 0xffff;
    if fua {
        c.cdw12 |= io::CDW12_FUA;
    }
    c
}

/// Read `nlb` (1..=65536) blocks at `slba`.
pub fn read(nsid: u32, slba: u64, nlb: u32) -> Command {
    rw(io::READ, nsid, slba, nlb, false)
}

/// Write `nlb` (1..=65536) blocks at `slba`, optionally Force Unit Access.
pub fn write(nsid: u32, slba: u64, nlb: u32, fua: bool) -> Command {
    rw(io::WRITE, nsid, slba, nlb, fua)
}

/// Write Zeroes over `nlb` (1..=65536) blocks at `slba`.
pub fn write_zeroes(nsid: u32, slba: u64, nlb: u32) -> Command {
    rw(io::WRITE_ZEROES, nsid, slba, nlb, false)
}

/// Flush the volatile write cache of `nsid`.
pub fn flush(nsid: u32) -> Command {
    Command::new(io::FLUSH, nsid)
}

/// Dataset Management deallocate over `ranges` (1..=256) ranges in the page at `prp1`.
pub fn dsm_deallocate(nsid: u32, ranges: u32, prp1: u64) -> Command {
    let mut c = Command::new(io::DATASET_MANAGEMENT, nsid);
    c.prp1 = prp1;
    c.cdw10 = ranges - 1;
    c.cdw11 = io::DSM_AD;
    c
}

/// A short name of an opcode for logs and errors.
pub fn io_name(opcode: u8) -> &'static str {
    match opcode {
        io::READ => "read",
        io::WRITE => "write",
        io::FLUSH => "flush",
        io::WRITE_ZEROES => "write zeroes",
        io::DATASET_MANAGEMENT => "deallocate",
        _ => "I/O command",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_encoding() {
        let c = write(1, 0x1_2345_6789, 8, true);
        let b = c.to_bytes();
        assert_eq!(b[0], io::WRITE);
        assert_eq!(u32::from_le_bytes(b[4..8].try_into().unwrap()), 1);
        assert_eq!(c.slba(), 0x1_2345_6789);
        assert_eq!(
            u32::from_le_bytes(b[40..44].try_into().unwrap()),
            0x2345_6789
        );
        assert_eq!(u32::from_le_bytes(b[44..48].try_into().unwrap()), 1);
        assert_eq!(c.nlb(), 8);
        assert_eq!(c.cdw12 & io::CDW12_FUA, io::CDW12_FUA);
        assert_eq!(read(1, 0, 65536).cdw12, 0xffff);
        assert_eq!(read(1, 0, 1).cdw12 & io::CDW12_FUA, 0);
        assert_eq!(read(3, 7, 1).opcode(), io::READ);
        let z = write_zeroes(2, 100, 16);
        assert_eq!(
            (z.opcode(), z.slba(), z.nlb(), z.nsid),
            (io::WRITE_ZEROES, 100, 16, 2)
        );
        let f = flush(5);
        assert_eq!((f.opcode(), f.nsid, f.cdw10), (io::FLUSH, 5, 0));
        let d = dsm_deallocate(1, 3, 0x5000);
        assert_eq!(
            (d.opcode(), d.cdw10, d.cdw11, d.prp1),
            (io::DATASET_MANAGEMENT, 2, io::DSM_AD, 0x5000)
        );
        assert_eq!(c.psdt(), 0, "PRPs, not SGLs");
    }

    #[test]
    fn admin_encoding() {
        let cq = create_io_cq(3, 64, 0x9000, Some(2));
        assert_eq!(
            (cq.opcode(), cq.cdw10, cq.cdw11, cq.prp1),
            (
                admin::CREATE_IO_CQ,
                3 | (63 << 16),
                0b11 | (2 << 16),
                0x9000
            )
        );
        assert_eq!(
            create_io_cq(1, 2, 0, None).cdw11,
            1,
            "polled: IEN clear, PC set"
        );
        let sq = create_io_sq(3, 64, 0xa000, 3);
        assert_eq!(
            (sq.opcode(), sq.cdw10, sq.cdw11),
            (admin::CREATE_IO_SQ, 3 | (63 << 16), 1 | (3 << 16))
        );
        assert_eq!(delete_io_sq(4).cdw10, 4);
        assert_eq!(delete_io_cq(4).opcode(), admin::DELETE_IO_CQ);
        let q = set_number_of_queues(4, 4);
        assert_eq!(
            (q.cdw10, q.cdw11),
            (u32::from(feature::NUMBER_OF_QUEUES), 3 | (3 << 16))
        );
        let l = get_log_page(2, 0xffff_ffff, 512, 0x3000);
        assert_eq!(
            (l.cdw10, l.cdw11, l.nsid),
            (2 | (127 << 16), 0, 0xffff_ffff)
        );
        let a = abort(2, 0x1234);
        assert_eq!((a.opcode(), a.cdw10), (admin::ABORT, 2 | (0x1234 << 16)));
        let i = identify_namespace(7, 0x4000);
        assert_eq!(
            (i.opcode(), i.nsid, i.cdw10, i.prp1),
            (admin::IDENTIFY, 7, cns::NAMESPACE, 0x4000)
        );
        assert_eq!(identify_active_namespaces(0).cdw10, cns::ACTIVE_NAMESPACES);
        assert_eq!(identify_controller(0).cdw10, cns::CONTROLLER);
    }
}
