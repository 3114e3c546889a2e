//! NVMe base specification definitions: registers, command and completion layouts,
//! opcodes, status codes, and parsers for Identify and log pages.
//!
//! Shared by the driver and the simulated controller. Everything here is plain
//! little-endian encoding with no `unsafe`; parsers take untrusted device bytes and
//! never panic on any input (they are fuzz targets).

/// Controller register offsets in BAR0.
pub mod reg {
    /// Controller Capabilities (64-bit).
    pub const CAP: u64 = 0x00;
    /// Version.
    pub const VS: u64 = 0x08;
    /// Interrupt Mask Set.
    pub const INTMS: u64 = 0x0c;
    /// Interrupt Mask Clear.
    pub const INTMC: u64 = 0x10;
    /// Controller Configuration.
    pub const CC: u64 = 0x14;
    /// Controller Status.
    pub const CSTS: u64 = 0x1c;
    /// NVM Subsystem Reset.
    pub const NSSR: u64 = 0x20;
    /// Admin Queue Attributes.
    pub const AQA: u64 = 0x24;
    /// Admin Submission Queue base address (64-bit).
    pub const ASQ: u64 = 0x28;
    /// Admin Completion Queue base address (64-bit).
    pub const ACQ: u64 = 0x30;
    /// First doorbell register.
    pub const DOORBELL_BASE: u64 = 0x1000;

    /// Offset of the submission queue `qid` tail doorbell for doorbell stride `dstrd`.
    pub fn sq_tail_doorbell(qid: u16, dstrd: u8) -> u64 {
        DOORBELL_BASE + (2 * u64::from(qid)) * (4u64 << dstrd)
    }

    /// Offset of the completion queue `qid` head doorbell for doorbell stride `dstrd`.
    pub fn cq_head_doorbell(qid: u16, dstrd: u8) -> u64 {
        DOORBELL_BASE + (2 * u64::from(qid) + 1) * (4u64 << dstrd)
    }
}

/// Decoded CAP register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cap(pub u64);

impl Cap {
    /// Maximum Queue Entries Supported, as a count (the register is 0-based).
    pub fn mqes(self) -> u32 {
        (self.0 & 0xffff) as u32 + 1
    }
    /// Contiguous Queues Required.
    pub fn cqr(self) -> bool {
        self.0 & (1 << 16) != 0
    }
    /// Timeout (worst-case CSTS.RDY transition) in milliseconds.
    pub fn timeout_ms(self) -> u64 {
        ((self.0 >> 24) & 0xff) * 500
    }
    /// Doorbell stride exponent (stride is 4 << DSTRD bytes).
    pub fn dstrd(self) -> u8 {
        ((self.0 >> 32) & 0xf) as u8
    }
    /// NVM command set supported (CSS bit 0).
    pub fn css_nvm(self) -> bool {
        (self.0 >> 37) & 1 != 0
    }
    /// Minimum memory page size in bytes.
    pub fn mps_min(self) -> u64 {
        1 << (12 + ((self.0 >> 48) & 0xf))
    }
    /// Maximum memory page size in bytes.
    pub fn mps_max(self) -> u64 {
        1 << (12 + ((self.0 >> 52) & 0xf))
    }
    /// Build a CAP value (used by the simulated controller).
    pub fn build(mqes: u16, timeout_500ms: u8, dstrd: u8, mpsmin: u8, mpsmax: u8) -> Cap {
        Cap(u64::from(mqes)
            | (1 << 16)
            | (u64::from(timeout_500ms) << 24)
            | (u64::from(dstrd & 0xf) << 32)
            | (1 << 37)
            | (u64::from(mpsmin & 0xf) << 48)
            | (u64::from(mpsmax & 0xf) << 52))
    }
}

/// CC register fields.
pub mod cc {
    /// Enable.
    pub const EN: u32 = 1 << 0;
    /// I/O Command Set Selected: NVM (0).
    pub const CSS_NVM: u32 = 0 << 4;
    /// Memory Page Size shift (value is log2(page) - 12).
    pub const MPS_SHIFT: u32 = 7;
    /// Arbitration: round robin (0).
    pub const AMS_RR: u32 = 0 << 11;
    /// Shutdown Notification shift and mask.
    pub const SHN_SHIFT: u32 = 14;
    /// SHN mask.
    pub const SHN_MASK: u32 = 0b11 << 14;
    /// Normal shutdown notification.
    pub const SHN_NORMAL: u32 = 0b01 << 14;
    /// Abrupt shutdown notification.
    pub const SHN_ABRUPT: u32 = 0b10 << 14;
    /// I/O Submission Queue Entry Size shift (log2(64) = 6).
    pub const IOSQES_SHIFT: u32 = 16;
    /// I/O Completion Queue Entry Size shift (log2(16) = 4).
    pub const IOCQES_SHIFT: u32 = 20;
    /// The usual CC for enable: NVM, 4 KiB pages, RR, 64 B SQEs, 16 B CQEs.
    pub const fn standard() -> u32 {
        EN | CSS_NVM | AMS_RR | (6 << IOSQES_SHIFT) | (4 << IOCQES_SHIFT)
    }
}

/// CSTS register fields.
pub mod csts {
    /// Ready.
    pub const RDY: u32 = 1 << 0;
    /// Controller Fatal Status.
    pub const CFS: u32 = 1 << 1;
    /// Shutdown Status shift.
    pub const SHST_SHIFT: u32 = 2;
    /// SHST mask.
    pub const SHST_MASK: u32 = 0b11 << 2;
    /// Shutdown processing occurring.
    pub const SHST_OCCURRING: u32 = 0b01 << 2;
    /// Shutdown processing complete.
    pub const SHST_COMPLETE: u32 = 0b10 << 2;
}

/// Build an AQA value from admin SQ and CQ sizes (entries, 1-based).
pub fn aqa(sq_entries: u16, cq_entries: u16) -> u32 {
    u32::from(sq_entries.saturating_sub(1) & 0xfff)
        | (u32::from(cq_entries.saturating_sub(1) & 0xfff) << 16)
}

/// Size of a submission queue entry.
pub const SQE_SIZE: usize = 64;
/// Size of a completion queue entry.
pub const CQE_SIZE: usize = 16;

/// Admin command opcodes.
pub mod admin {
    /// Delete I/O Submission Queue.
    pub const DELETE_IO_SQ: u8 = 0x00;
    /// Create I/O Submission Queue.
    pub const CREATE_IO_SQ: u8 = 0x01;
    /// Get Log Page.
    pub const GET_LOG_PAGE: u8 = 0x02;
    /// Delete I/O Completion Queue.
    pub const DELETE_IO_CQ: u8 = 0x04;
    /// Create I/O Completion Queue.
    pub const CREATE_IO_CQ: u8 = 0x05;
    /// Identify.
    pub const IDENTIFY: u8 = 0x06;
    /// Abort.
    pub const ABORT: u8 = 0x08;
    /// Set Features.
    pub const SET_FEATURES: u8 = 0x09;
    /// Get Features.
    pub const GET_FEATURES: u8 = 0x0a;
    /// Asynchronous Event Request.
    pub const ASYNC_EVENT_REQUEST: u8 = 0x0c;
}

/// NVM command set I/O opcodes.
pub mod io {
    /// Flush.
    pub const FLUSH: u8 = 0x00;
    /// Write.
    pub const WRITE: u8 = 0x01;
    /// Read.
    pub const READ: u8 = 0x02;
    /// Write Zeroes.
    pub const WRITE_ZEROES: u8 = 0x08;
    /// Dataset Management.
    pub const DATASET_MANAGEMENT: u8 = 0x09;
    /// CDW12 bit: Force Unit Access (Read/Write).
    pub const CDW12_FUA: u32 = 1 << 30;
    /// CDW12 bit: deallocate (Write Zeroes).
    pub const CDW12_DEAC: u32 = 1 << 25;
    /// CDW11 bit: Attribute Deallocate (Dataset Management).
    pub const DSM_AD: u32 = 1 << 2;
}

/// Identify CNS values.
pub mod cns {
    /// Identify Namespace.
    pub const NAMESPACE: u32 = 0x00;
    /// Identify Controller.
    pub const CONTROLLER: u32 = 0x01;
    /// Active Namespace ID list.
    pub const ACTIVE_NAMESPACES: u32 = 0x02;
}

/// Feature identifiers.
pub mod feature {
    /// Volatile Write Cache.
    pub const VOLATILE_WRITE_CACHE: u8 = 0x06;
    /// Number of Queues.
    pub const NUMBER_OF_QUEUES: u8 = 0x07;
    /// Interrupt Coalescing.
    pub const INTERRUPT_COALESCING: u8 = 0x08;
}

/// Log page identifiers.
pub mod log {
    /// Error Information.
    pub const ERROR_INFORMATION: u8 = 0x01;
    /// SMART / Health Information.
    pub const SMART_HEALTH: u8 = 0x02;
}

/// Status code types.
pub mod sct {
    /// Generic Command Status.
    pub const GENERIC: u8 = 0;
    /// Command Specific Status.
    pub const COMMAND_SPECIFIC: u8 = 1;
    /// Media and Data Integrity Errors.
    pub const MEDIA: u8 = 2;
    /// Path Related Status.
    pub const PATH: u8 = 3;
}

/// Generic status codes (SCT 0).
pub mod sc {
    /// Successful Completion.
    pub const SUCCESS: u8 = 0x00;
    /// Invalid Command Opcode.
    pub const INVALID_OPCODE: u8 = 0x01;
    /// Invalid Field in Command.
    pub const INVALID_FIELD: u8 = 0x02;
    /// Command ID Conflict.
    pub const CID_CONFLICT: u8 = 0x03;
    /// Data Transfer Error.
    pub const DATA_TRANSFER_ERROR: u8 = 0x04;
    /// Commands Aborted due to Power Loss Notification.
    pub const ABORTED_POWER_LOSS: u8 = 0x05;
    /// Internal Error.
    pub const INTERNAL_ERROR: u8 = 0x06;
    /// Command Abort Requested.
    pub const ABORT_REQUESTED: u8 = 0x07;
    /// Command Aborted due to SQ Deletion.
    pub const ABORTED_SQ_DELETION: u8 = 0x08;
    /// Invalid Namespace or Format.
    pub const INVALID_NAMESPACE: u8 = 0x0b;
    /// Invalid PRP Offset.
    pub const INVALID_PRP_OFFSET: u8 = 0x13;
    /// LBA Out of Range.
    pub const LBA_OUT_OF_RANGE: u8 = 0x80;
    /// Capacity Exceeded.
    pub const CAPACITY_EXCEEDED: u8 = 0x81;
    /// Namespace Not Ready.
    pub const NAMESPACE_NOT_READY: u8 = 0x82;
    /// Command-specific (SCT 1): Completion Queue Invalid.
    pub const CS_INVALID_CQ: u8 = 0x00;
    /// Command-specific (SCT 1): Invalid Queue Identifier.
    pub const CS_INVALID_QID: u8 = 0x01;
    /// Command-specific (SCT 1): Invalid Queue Size.
    pub const CS_INVALID_QUEUE_SIZE: u8 = 0x02;
    /// Command-specific (SCT 1): Abort Command Limit Exceeded.
    pub const CS_ABORT_LIMIT: u8 = 0x03;
    /// Command-specific (SCT 1): Invalid Log Page.
    pub const CS_INVALID_LOG_PAGE: u8 = 0x09;
    /// Media (SCT 2): Write Fault.
    pub const MEDIA_WRITE_FAULT: u8 = 0x80;
    /// Media (SCT 2): Unrecovered Read Error.
    pub const MEDIA_UNRECOVERED_READ: u8 = 0x81;
}

/// A human name for a status, for error messages.
pub fn status_name(sct_v: u8, sc_v: u8) -> &'static str {
    match (sct_v, sc_v) {
        (0, 0x00) => "success",
        (0, 0x01) => "invalid command opcode",
        (0, 0x02) => "invalid field in command",
        (0, 0x03) => "command ID conflict",
        (0, 0x04) => "data transfer error",
        (0, 0x05) => "aborted: power loss notification",
        (0, 0x06) => "internal error",
        (0, 0x07) => "aborted: abort requested",
        (0, 0x08) => "aborted: SQ deletion",
        (0, 0x0b) => "invalid namespace or format",
        (0, 0x13) => "invalid PRP offset",
        (0, 0x80) => "LBA out of range",
        (0, 0x81) => "capacity exceeded",
        (0, 0x82) => "namespace not ready",
        (1, 0x00) => "completion queue invalid",
        (1, 0x01) => "invalid queue identifier",
        (1, 0x02) => "invalid queue size",
        (1, 0x03) => "abort command limit exceeded",
        (1, 0x09) => "invalid log page",
        (2, 0x80) => "write fault",
        (2, 0x81) => "unrecovered read error",
        (2, 0x82) => "end-to-end guard check error",
        (2, 0x85) => "compare failure",
        (2, 0x86) => "access denied",
        (2, 0x87) => "deallocated or unwritten logical block",
        _ => "unknown status",
    }
}

/// A submission queue entry (64 bytes), as dwords.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Command {
    /// CDW0: opcode [7:0], FUSE [9:8], PSDT [15:14], CID [31:16].
    pub cdw0: u32,
    /// Namespace ID.
    pub nsid: u32,
    /// CDW2..3 (reserved for most commands).
    pub cdw2: u32,
    /// CDW3.
    pub cdw3: u32,
    /// Metadata pointer.
    pub mptr: u64,
    /// PRP entry 1.
    pub prp1: u64,
    /// PRP entry 2 (or PRP list pointer).
    pub prp2: u64,
    /// CDW10..15.
    pub cdw10: u32,
    /// CDW11.
    pub cdw11: u32,
    /// CDW12.
    pub cdw12: u32,
    /// CDW13.
    pub cdw13: u32,
    /// CDW14.
    pub cdw14: u32,
    /// CDW15.
    pub cdw15: u32,
}

impl Command {
    /// A command with `opcode` and `nsid`; the CID is set by the queue on submission.
    pub fn new(opcode: u8, nsid: u32) -> Command {
        Command {
            cdw0: u32::from(opcode),
            nsid,
            ..Command::default()
        }
    }
    /// Opcode.
    pub fn opcode(&self) -> u8 {
        self.cdw0 as u8
    }
    /// Command identifier.
    pub fn cid(&self) -> u16 {
        (self.cdw0 >> 16) as u16
    }
    /// Set the command identifier.
    pub fn set_cid(&mut self, cid: u16) {
        self.cdw0 = (self.cdw0 & 0xffff) | (u32::from(cid) << 16);
    }
    /// PRP or SGL selector (0 = PRP).
    pub fn psdt(&self) -> u8 {
        ((self.cdw0 >> 14) & 0b11) as u8
    }
    /// Starting LBA (CDW10/11) for I/O commands.
    pub fn slba(&self) -> u64 {
        u64::from(self.cdw10) | (u64::from(self.cdw11) << 32)
    }
    /// Number of logical blocks (CDW12 NLB, converted from 0-based).
    pub fn nlb(&self) -> u32 {
        (self.cdw12 & 0xffff) + 1
    }
    /// Encode to the 64 wire bytes.
    pub fn to_bytes(&self) -> [u8; SQE_SIZE] {
        let mut b = [0u8; SQE_SIZE];
        let dws = [
            self.cdw0,
            self.nsid,
            self.cdw2,
            self.cdw3,
            self.mptr as u32,
            (self.mptr >> 32) as u32,
            self.prp1 as u32,
            (self.prp1 >> 32) as u32,
            self.prp2 as u32,
            (self.prp2 >> 32) as u32,
            self.cdw10,
            self.cdw11,
            self.cdw12,
            self.cdw13,
            self.cdw14,
            self.cdw15,
        ];
        for (i, dw) in dws.iter().enumerate() {
            b[4 * i..4 * i + 4].copy_from_slice(&dw.to_le_bytes());
        }
        b
    }
    /// Decode from the 64 wire bytes.
    pub fn from_bytes(b: &[u8; SQE_SIZE]) -> Command {
        let dw =
            |i: usize| u32::from_le_bytes([b[4 * i], b[4 * i + 1], b[4 * i + 2], b[4 * i + 3]]);
        let qw = |i: usize| u64::from(dw(i)) | (u64::from(dw(i + 1)) << 32);
        Command {
            cdw0: dw(0),
            nsid: dw(1),
            cdw2: dw(2),
            cdw3: dw(3),
            mptr: qw(4),
            prp1: qw(6),
            prp2: qw(8),
            cdw10: dw(10),
            cdw11: dw(11),
            cdw12: dw(12),
            cdw13: dw(13),
            cdw14: dw(14),
            cdw15: dw(15),
        }
    }
}

/// A completion queue entry (16 bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Completion {
    /// DW0: command specific result.
    pub result: u32,
    /// DW1: reserved / command specific.
    pub dw1: u32,
    /// SQ head pointer.
    pub sq_head: u16,
    /// SQ identifier.
    pub sq_id: u16,
    /// Command identifier.
    pub cid: u16,
    /// Status field including the phase tag in bit 0 (DW3 [31:16]).
    pub status: u16,
}

impl Completion {
    /// Phase tag.
    pub fn phase(&self) -> bool {
        self.status & 1 != 0
    }
    /// Status Code.
    pub fn sc(&self) -> u8 {
        (self.status >> 1) as u8
    }
    /// Status Code Type.
    pub fn sct(&self) -> u8 {
        ((self.status >> 9) & 0b111) as u8
    }
    /// More information available in the error log.
    pub fn more(&self) -> bool {
        self.status & (1 << 14) != 0
    }
    /// Do Not Retry.
    pub fn dnr(&self) -> bool {
        self.status & (1 << 15) != 0
    }
    /// Whether the command succeeded.
    pub fn is_success(&self) -> bool {
        self.sc() == 0 && self.sct() == 0
    }
    /// Status field (without phase) built from SCT/SC/DNR.
    pub fn status_field(sct_v: u8, sc_v: u8, dnr: bool) -> u16 {
        (u16::from(sc_v) << 1) | (u16::from(sct_v & 0b111) << 9) | if dnr { 1 << 15 } else { 0 }
    }
    /// Encode to the 16 wire bytes.
    pub fn to_bytes(&self) -> [u8; CQE_SIZE] {
        let mut b = [0u8; CQE_SIZE];
        b[0..4].copy_from_slice(&self.result.to_le_bytes());
        b[4..8].copy_from_slice(&self.dw1.to_le_bytes());
        b[8..10].copy_from_slice(&self.sq_head.to_le_bytes());
        b[10..12].copy_from_slice(&self.sq_id.to_le_bytes());
        b[12..14].copy_from_slice(&self.cid.to_le_bytes());
        b[14..16].copy_from_slice(&self.status.to_le_bytes());
        b
    }
    /// Decode from the 16 wire bytes.
    pub fn from_bytes(b: &[u8; CQE_SIZE]) -> Completion {
        Completion {
            result: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            dw1: u32::from_le_bytes([b[4], b[5], b[6], b[7]]),
            sq_head: u16::from_le_bytes([b[8], b[9]]),
            sq_id: u16::from_le_bytes([b[10], b[11]]),
            cid: u16::from_le_bytes([b[12], b[13]]),
            status: u16::from_le_bytes([b[14], b[15]]),
        }
    }
}

fn le16(b: &[u8], off: usize) -> u16 {
    b.get(off..off + 2)
        .map_or(0, |s| u16::from_le_bytes([s[0], s[1]]))
}
fn le32(b: &[u8], off: usize) -> u32 {
    b.get(off..off + 4)
        .map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}
fn le64(b: &[u8], off: usize) -> u64 {
    u64::from(le32(b, off)) | (u64::from(le32(b, off + 4)) << 32)
}
fn le128(b: &[u8], off: usize) -> u128 {
    u128::from(le64(b, off)) | (u128::from(le64(b, off + 8)) << 64)
}
fn ascii(b: &[u8], off: usize, len: usize) -> String {
    let s = b.get(off..off + len).unwrap_or(&[]);
    s.iter()
        .map(|&c| {
            if c.is_ascii_graphic() || c == b' ' {
                c as char
            } else {
                '?'
            }
        })
        .collect::<String>()
        .trim_end()
        .to_string()
}

/// Size of an Identify data structure.
pub const IDENTIFY_SIZE: usize = 4096;

/// The Identify Controller fields Ingot uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IdentifyController {
    /// PCI vendor ID.
    pub vid: u16,
    /// Serial number.
    pub serial: String,
    /// Model number.
    pub model: String,
    /// Firmware revision.
    pub firmware: String,
    /// Maximum Data Transfer Size as a power of two of CAP.MPSMIN pages (0 = no limit).
    pub mdts: u8,
    /// Controller ID.
    pub cntlid: u16,
    /// Version (as VS).
    pub ver: u32,
    /// Abort Command Limit (0-based).
    pub acl: u8,
    /// Error Log Page Entries (0-based).
    pub elpe: u8,
    /// Number of namespaces.
    pub nn: u32,
    /// Optional NVM Command Support (bit 2 DSM, bit 3 Write Zeroes).
    pub oncs: u16,
    /// Volatile Write Cache present (bit 0).
    pub vwc: u8,
}

impl IdentifyController {
    /// Parse from the 4096-byte Identify Controller structure (shorter input reads as zeroes).
    pub fn parse(b: &[u8]) -> IdentifyController {
        IdentifyController {
            vid: le16(b, 0),
            serial: ascii(b, 4, 20),
            model: ascii(b, 24, 40),
            firmware: ascii(b, 64, 8),
            mdts: b.get(77).copied().unwrap_or(0),
            cntlid: le16(b, 78),
            ver: le32(b, 80),
            acl: b.get(258).copied().unwrap_or(0),
            elpe: b.get(262).copied().unwrap_or(0),
            nn: le32(b, 516),
            oncs: le16(b, 520),
            vwc: b.get(525).copied().unwrap_or(0),
        }
    }
    /// Encode into a 4096-byte structure (the simulated controller answers with this).
    pub fn encode(&self) -> [u8; IDENTIFY_SIZE] {
        let mut b = [0u8; IDENTIFY_SIZE];
        let put_ascii = |b: &mut [u8], off: usize, len: usize, s: &str| {
            let field = &mut b[off..off + len];
            field.fill(b' ');
            for (d, c) in field.iter_mut().zip(s.bytes()) {
                *d = c;
            }
        };
        b[0..2].copy_from_slice(&self.vid.to_le_bytes());
        put_ascii(&mut b, 4, 20, &self.serial);
        put_ascii(&mut b, 24, 40, &self.model);
        put_ascii(&mut b, 64, 8, &self.firmware);
        b[77] = self.mdts;
        b[78..80].copy_from_slice(&self.cntlid.to_le_bytes());
        b[80..84].copy_from_slice(&self.ver.to_le_bytes());
        b[258] = self.acl;
        b[262] = self.elpe;
        b[512] = 0x66; // SQES: required and max 64 bytes
        b[513] = 0x44; // CQES: 16 bytes
        b[516..520].copy_from_slice(&self.nn.to_le_bytes());
        b[520..522].copy_from_slice(&self.oncs.to_le_bytes());
        b[525] = self.vwc;
        b
    }
    /// Dataset Management supported.
    pub fn supports_dsm(&self) -> bool {
        self.oncs & (1 << 2) != 0
    }
    /// Write Zeroes supported.
    pub fn supports_write_zeroes(&self) -> bool {
        self.oncs & (1 << 3) != 0
    }
}

/// One LBA format of a namespace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LbaFormat {
    /// Metadata bytes per LBA.
    pub ms: u16,
    /// LBA data size as a power of two.
    pub lbads: u8,
    /// Relative performance.
    pub rp: u8,
}

/// The Identify Namespace fields Ingot uses.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct IdentifyNamespace {
    /// Namespace size in logical blocks.
    pub nsze: u64,
    /// Namespace capacity in logical blocks.
    pub ncap: u64,
    /// Namespace utilization.
    pub nuse: u64,
    /// Namespace features.
    pub nsfeat: u8,
    /// LBA formats (up to 64).
    pub lba_formats: Vec<LbaFormat>,
    /// Index of the format in use.
    pub flbas_index: u8,
}

impl IdentifyNamespace {
    /// Parse from the 4096-byte Identify Namespace structure.
    pub fn parse(b: &[u8]) -> IdentifyNamespace {
        let nlbaf = usize::from(b.get(25).copied().unwrap_or(0)).min(63) + 1;
        let flbas = b.get(26).copied().unwrap_or(0);
        let idx = (flbas & 0xf) | ((flbas >> 5) & 0b11) << 4;
        let lba_formats = (0..nlbaf)
            .map(|i| {
                let dw = le32(b, 128 + 4 * i);
                LbaFormat {
                    ms: dw as u16,
                    lbads: (dw >> 16) as u8,
                    rp: ((dw >> 24) & 0b11) as u8,
                }
            })
            .collect();
        IdentifyNamespace {
            nsze: le64(b, 0),
            ncap: le64(b, 8),
            nuse: le64(b, 16),
            nsfeat: b.get(24).copied().unwrap_or(0),
            lba_formats,
            flbas_index: idx,
        }
    }
    /// Encode into a 4096-byte structure.
    pub fn encode(&self) -> [u8; IDENTIFY_SIZE] {
        let mut b = [0u8; IDENTIFY_SIZE];
        b[0..8].copy_from_slice(&self.nsze.to_le_bytes());
        b[8..16].copy_from_slice(&self.ncap.to_le_bytes());
        b[16..24].copy_from_slice(&self.nuse.to_le_bytes());
        b[24] = self.nsfeat;
        let n = self.lba_formats.len().clamp(1, 64);
        b[25] = (n - 1) as u8;
        b[26] = (self.flbas_index & 0xf) | ((self.flbas_index >> 4) & 0b11) << 5;
        for (i, f) in self.lba_formats.iter().take(64).enumerate() {
            let dw = u32::from(f.ms) | (u32::from(f.lbads) << 16) | (u32::from(f.rp & 0b11) << 24);
            b[128 + 4 * i..132 + 4 * i].copy_from_slice(&dw.to_le_bytes());
        }
        b
    }
    /// The LBA format in use, if the index is valid.
    pub fn current_format(&self) -> Option<LbaFormat> {
        self.lba_formats.get(usize::from(self.flbas_index)).copied()
    }
    /// Logical block size in bytes of the format in use, if it is sane (512 B to 64 KiB).
    pub fn block_size(&self) -> Option<u32> {
        let f = self.current_format()?;
        (9..=16).contains(&f.lbads).then(|| 1u32 << f.lbads)
    }
}

/// Parse an active namespace ID list (CNS 02h): the non-zero IDs, in order.
pub fn parse_namespace_list(b: &[u8]) -> Vec<u32> {
    b.chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .take_while(|&id| id != 0)
        .collect()
}

/// Size of the SMART / Health log page.
pub const SMART_LOG_SIZE: usize = 512;

/// NVMe data units are thousands of 512-byte units.
fn data_unit_bytes(units: u128) -> u64 {
    u64::try_from(units.saturating_mul(512_000)).unwrap_or(u64::MAX)
}

/// SMART / Health Information log page (LID 02h).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct SmartLog {
    /// Critical Warning bits.
    pub critical_warning: u8,
    /// Composite temperature in kelvin.
    pub temperature_kelvin: u16,
    /// Available spare, percent.
    pub available_spare: u8,
    /// Available spare threshold, percent.
    pub available_spare_threshold: u8,
    /// Percentage used.
    pub percentage_used: u8,
    /// Data units read (1000 x 512 B).
    pub data_units_read: u128,
    /// Data units written.
    pub data_units_written: u128,
    /// Host read commands.
    pub host_read_commands: u128,
    /// Host write commands.
    pub host_write_commands: u128,
    /// Power cycles.
    pub power_cycles: u128,
    /// Power-on hours.
    pub power_on_hours: u128,
    /// Unsafe shutdowns.
    pub unsafe_shutdowns: u128,
    /// Media and data integrity errors.
    pub media_errors: u128,
    /// Number of error information log entries.
    pub error_log_entries: u128,
}

impl SmartLog {
    /// Bytes read, from data units (1000 x 512 B each), saturating.
    pub fn data_read_bytes(&self) -> u64 {
        data_unit_bytes(self.data_units_read)
    }

    /// Bytes written, from data units (1000 x 512 B each), saturating.
    pub fn data_written_bytes(&self) -> u64 {
        data_unit_bytes(self.data_units_written)
    }

    /// Parse the 512-byte log page.
    pub fn parse(b: &[u8]) -> SmartLog {
        SmartLog {
            critical_warning: b.first().copied().unwrap_or(0),
            temperature_kelvin: le16(b, 1),
            available_spare: b.get(3).copied().unwrap_or(0),
            available_spare_threshold: b.get(4).copied().unwrap_or(0),
            percentage_used: b.get(5).copied().unwrap_or(0),
            data_units_read: le128(b, 32),
            data_units_written: le128(b, 48),
            host_read_commands: le128(b, 64),
            host_write_commands: le128(b, 80),
            power_cycles: le128(b, 112),
            power_on_hours: le128(b, 128),
            unsafe_shutdowns: le128(b, 144),
            media_errors: le128(b, 160),
            error_log_entries: le128(b, 176),
        }
    }
    /// Encode the 512-byte log page.
    pub fn encode(&self) -> [u8; SMART_LOG_SIZE] {
        let mut b = [0u8; SMART_LOG_SIZE];
        b[0] = self.critical_warning;
        b[1..3].copy_from_slice(&self.temperature_kelvin.to_le_bytes());
        b[3] = self.available_spare;
        b[4] = self.available_spare_threshold;
        b[5] = self.percentage_used;
        for (off, v) in [
            (32, self.data_units_read),
            (48, self.data_units_written),
            (64, self.host_read_commands),
            (80, self.host_write_commands),
            (112, self.power_cycles),
            (128, self.power_on_hours),
            (144, self.unsafe_shutdowns),
            (160, self.media_errors),
            (176, self.error_log_entries),
        ] {
            b[off..off + 16].copy_from_slice(&v.to_le_bytes());
        }
        b
    }
}

/// Size of one Error Information log entry.
pub const ERROR_LOG_ENTRY_SIZE: usize = 64;

/// One Error Information log entry (LID 01h).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ErrorLogEntry {
    /// Error count (unique, increasing; 0 means the entry is empty).
    pub error_count: u64,
    /// Submission queue ID.
    pub sqid: u16,
    /// Command ID.
    pub cid: u16,
    /// Status field (bit 0 is the phase tag of the completion).
    pub status: u16,
    /// Parameter error location.
    pub param_error_location: u16,
    /// LBA of the first error.
    pub lba: u64,
    /// Namespace.
    pub nsid: u32,
}

impl ErrorLogEntry {
    /// Parse one 64-byte entry.
    pub fn parse(b: &[u8]) -> ErrorLogEntry {
        ErrorLogEntry {
            error_count: le64(b, 0),
            sqid: le16(b, 8),
            cid: le16(b, 10),
            status: le16(b, 12),
            param_error_location: le16(b, 14),
            lba: le64(b, 16),
            nsid: le32(b, 24),
        }
    }
    /// Encode one 64-byte entry.
    pub fn encode(&self) -> [u8; ERROR_LOG_ENTRY_SIZE] {
        let mut b = [0u8; ERROR_LOG_ENTRY_SIZE];
        b[0..8].copy_from_slice(&self.error_count.to_le_bytes());
        b[8..10].copy_from_slice(&self.sqid.to_le_bytes());
        b[10..12].copy_from_slice(&self.cid.to_le_bytes());
        b[12..14].copy_from_slice(&self.status.to_le_bytes());
        b[14..16].copy_from_slice(&self.param_error_location.to_le_bytes());
        b[16..24].copy_from_slice(&self.lba.to_le_bytes());
        b[24..28].copy_from_slice(&self.nsid.to_le_bytes());
        b
    }
    /// Parse a whole log: the non-empty entries.
    pub fn parse_log(b: &[u8]) -> Vec<ErrorLogEntry> {
        b.chunks_exact(ERROR_LOG_ENTRY_SIZE)
            .map(ErrorLogEntry::parse)
            .filter(|e| e.error_count != 0)
            .collect()
    }
}

/// One Dataset Management range (16 bytes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DsmRange {
    /// Context attributes.
    pub attributes: u32,
    /// Length in logical blocks (not 0-based).
    pub nlb: u32,
    /// Starting LBA.
    pub slba: u64,
}

impl DsmRange {
    /// Size of one range on the wire.
    pub const SIZE: usize = 16;
    /// Encode.
    pub fn to_bytes(&self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0..4].copy_from_slice(&self.attributes.to_le_bytes());
        b[4..8].copy_from_slice(&self.nlb.to_le_bytes());
        b[8..16].copy_from_slice(&self.slba.to_le_bytes());
        b
    }
    /// Decode.
    pub fn parse(b: &[u8]) -> DsmRange {
        DsmRange {
            attributes: le32(b, 0),
            nlb: le32(b, 4),
            slba: le64(b, 8),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn sqe_roundtrip(dws in proptest::array::uniform16(any::<u32>())) {
            let mut b = [0u8; SQE_SIZE];
            for (i, d) in dws.iter().enumerate() { b[4*i..4*i+4].copy_from_slice(&d.to_le_bytes()); }
            prop_assert_eq!(Command::from_bytes(&b).to_bytes(), b);
        }

        #[test]
        fn cqe_roundtrip(b in proptest::array::uniform16(any::<u8>())) {
            prop_assert_eq!(Completion::from_bytes(&b).to_bytes(), b);
        }

        #[test]
        fn parsers_never_panic(b in proptest::collection::vec(any::<u8>(), 0..5000)) {
            let _ = IdentifyController::parse(&b);
            let ns = IdentifyNamespace::parse(&b);
            let _ = ns.block_size();
            let _ = SmartLog::parse(&b);
            let _ = ErrorLogEntry::parse_log(&b);
            let _ = parse_namespace_list(&b);
        }
    }

    #[test]
    fn completion_status_bits() {
        let s = Completion::status_field(sct::MEDIA, sc::MEDIA_UNRECOVERED_READ, true) | 1;
        let c = Completion {
            status: s,
            ..Completion::default()
        };
        assert!(c.phase());
        assert_eq!((c.sct(), c.sc(), c.dnr()), (2, 0x81, true));
        assert!(!c.is_success());
    }

    #[test]
    fn identify_roundtrip() {
        let id = IdentifyController {
            vid: 0x1b36,
            serial: "SIM0001".into(),
            model: "Ingot Simulated NVMe".into(),
            firmware: "1.0".into(),
            mdts: 5,
            cntlid: 1,
            ver: 0x0001_0400,
            acl: 3,
            elpe: 63,
            nn: 1,
            oncs: 0b1100,
            vwc: 1,
        };
        assert_eq!(IdentifyController::parse(&id.encode()), id);
        let ns = IdentifyNamespace {
            nsze: 1 << 20,
            ncap: 1 << 20,
            nuse: 0,
            nsfeat: 0,
            lba_formats: vec![
                LbaFormat {
                    ms: 0,
                    lbads: 9,
                    rp: 0,
                },
                LbaFormat {
                    ms: 0,
                    lbads: 12,
                    rp: 0,
                },
            ],
            flbas_index: 1,
        };
        let back = IdentifyNamespace::parse(&ns.encode());
        assert_eq!(back, ns);
        assert_eq!(back.block_size(), Some(4096));
    }

    #[test]
    fn doorbells() {
        assert_eq!(reg::sq_tail_doorbell(0, 0), 0x1000);
        assert_eq!(reg::cq_head_doorbell(0, 0), 0x1004);
        assert_eq!(reg::sq_tail_doorbell(1, 0), 0x1008);
        assert_eq!(reg::cq_head_doorbell(1, 1), 0x1000 + 3 * 8);
        let cap = Cap::build(2047, 15, 0, 0, 4);
        assert_eq!(
            (cap.mqes(), cap.timeout_ms(), cap.dstrd(), cap.mps_min()),
            (2048, 7500, 0, 4096)
        );
    }
}
