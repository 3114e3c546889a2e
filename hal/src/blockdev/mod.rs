//! The block-device seam: the one trait through which the pool sees storage.
//!
//! The same pool code runs on an NVMe namespace (real via VFIO, or the simulated
//! controller), a plain file, RAM, or a fault-injecting wrapper around any of them.
//! Offsets and lengths are in bytes and must be multiples of
//! [`Geometry::block_size`]; a device rejects anything else with
//! [`BlockError::Misaligned`] instead of guessing.

pub mod faulty;
pub mod file;
mod mem;

pub use faulty::{
    CrashPolicy, CrashReport, FaultKind, FaultRule, FaultyBlockDevice, FaultyConfig, FaultyStats,
    Op, OpSet, PowerRail, RuleId, power_cycle,
};
pub use file::FileBlockDevice;
pub use mem::MemBlockDevice;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use std::fmt;

/// Shape of a block device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Geometry {
    /// Logical block size in bytes (512 or 4096 for NVMe).
    pub block_size: u32,
    /// Number of logical blocks.
    pub blocks: u64,
    /// Largest single transfer the device takes without splitting, in bytes.
    pub max_transfer: u32,
    /// Whether the device has a volatile write cache (writes need a flush or FUA to be durable).
    pub volatile_write_cache: bool,
}

impl Geometry {
    /// Capacity in bytes.
    pub fn capacity(&self) -> u64 {
        self.blocks * u64::from(self.block_size)
    }
}

/// What kind of thing backs a block device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceKind {
    /// A namespace of a real NVMe controller reached through VFIO.
    NvmeVfio,
    /// A namespace of the in-process simulated NVMe controller.
    NvmeSim,
    /// A plain file (development).
    File,
    /// RAM.
    Memory,
    /// A fault-injecting wrapper around another device.
    Faulty,
}

/// Who a device is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceIdentity {
    /// Backend kind.
    pub kind: DeviceKind,
    /// Where it lives: a PCI address and namespace, or a path.
    pub location: String,
    /// Model string (NVMe Identify MN, or a description).
    pub model: String,
    /// Serial number (NVMe Identify SN).
    pub serial: String,
    /// Firmware revision (NVMe Identify FR).
    pub firmware: String,
}

/// Health as NVMe SMART/Health reports it; other backends fill what they can.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthInfo {
    /// Critical warning bits (NVMe SMART byte 0); 0 means none.
    pub critical_warning: u8,
    /// Composite temperature in kelvin, if known.
    pub temperature_kelvin: Option<u16>,
    /// Available spare, percent.
    pub available_spare_pct: Option<u8>,
    /// Percentage of rated endurance used (may exceed 100).
    pub percentage_used: Option<u8>,
    /// Data units read (thousands of 512-byte units, as NVMe counts them).
    pub data_units_read: u128,
    /// Data units written (thousands of 512-byte units).
    pub data_units_written: u128,
    /// Power-on hours.
    pub power_on_hours: u128,
    /// Unrecovered data integrity errors.
    pub media_errors: u128,
    /// Error information log entries over the device's life.
    pub error_log_entries: u128,
}

/// Flags on a write.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteFlags {
    /// Force Unit Access: durable when the write completes, without a flush.
    pub fua: bool,
}

impl WriteFlags {
    /// A plain (cached) write.
    pub const NONE: WriteFlags = WriteFlags { fua: false };
    /// A write that is durable on completion.
    pub const FUA: WriteFlags = WriteFlags { fua: true };
}

/// An NVMe status as the device reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct NvmeStatus {
    /// Status Code Type (0 generic, 1 command specific, 2 media/data integrity, 3 path).
    pub sct: u8,
    /// Status Code.
    pub sc: u8,
    /// Do Not Retry bit.
    pub dnr: bool,
}

impl fmt::Display for NvmeStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "NVMe status SCT {:#x} SC {:#04x} ({}){}",
            self.sct,
            self.sc,
            crate::nvme::spec::status_name(self.sct, self.sc),
            if self.dnr { ", do not retry" } else { "" }
        )
    }
}

/// Why a block-device operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlockError {
    /// Offset or length is not a multiple of the block size.
    #[error("{device}: offset {offset} / length {len} not aligned to block size {block_size}")]
    Misaligned {
        /// Device location.
        device: String,
        /// Byte offset asked for.
        offset: u64,
        /// Byte length asked for.
        len: u64,
        /// The device's block size.
        block_size: u32,
    },
    /// The range runs past the end of the device.
    #[error("{device}: range {offset}+{len} beyond capacity {capacity}")]
    OutOfRange {
        /// Device location.
        device: String,
        /// Byte offset asked for.
        offset: u64,
        /// Byte length asked for.
        len: u64,
        /// Capacity in bytes.
        capacity: u64,
    },
    /// The device completed the command with an error status.
    #[error("{device}: {op} at byte {offset} failed: {status}")]
    Nvme {
        /// Device location.
        device: String,
        /// Operation name.
        op: &'static str,
        /// Byte offset of the operation (0 for non-data commands).
        offset: u64,
        /// The status the device returned.
        status: NvmeStatus,
    },
    /// The command did not complete in time, even after abort/reset/retry.
    #[error("{device}: {op} timed out after recovery attempts")]
    Timeout {
        /// Device location.
        device: String,
        /// Operation name.
        op: &'static str,
    },
    /// The device is gone (surprise removal, controller fatal status, or closed).
    #[error("{device}: device lost: {reason}")]
    DeviceLost {
        /// Device location.
        device: String,
        /// What was seen.
        reason: String,
    },
    /// A host-side I/O error (file backends).
    #[error("{device}: {op} failed: {source}")]
    Io {
        /// Device location.
        device: String,
        /// Operation name.
        op: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// An injected fault (fault-injecting wrapper), described.
    #[error("{device}: injected fault: {what}")]
    Injected {
        /// Device location.
        device: String,
        /// Which fault.
        what: String,
    },
    /// The operation is not supported by this device.
    #[error("{device}: {op} not supported")]
    Unsupported {
        /// Device location.
        device: String,
        /// Operation name.
        op: &'static str,
    },
}

/// The block-device seam. Implemented by NVMe namespaces, files, RAM and fault wrappers.
///
/// All I/O methods may be called concurrently from many tasks.
#[async_trait]
pub trait BlockDevice: Send + Sync + fmt::Debug {
    /// Size and block size.
    fn geometry(&self) -> Geometry;
    /// Model, serial, firmware, location.
    fn identity(&self) -> DeviceIdentity;
    /// Read `buf.len()` bytes at byte `offset`.
    async fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError>;
    /// Write `buf` at byte `offset`; with `flags.fua` it is durable on return.
    async fn write(&self, offset: u64, buf: &[u8], flags: WriteFlags) -> Result<(), BlockError>;
    /// Make every completed write durable.
    async fn flush(&self) -> Result<(), BlockError>;
    /// Tell the device a range is unused (NVMe Dataset Management / deallocate, or hole punch).
    async fn deallocate(&self, offset: u64, len: u64) -> Result<(), BlockError>;
    /// Write zeroes over a range without transferring data.
    async fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), BlockError>;
    /// SMART/health data.
    async fn health(&self) -> Result<HealthInfo, BlockError>;
}

/// Check that `offset`/`len` are aligned and in range for `geom`; every backend uses this.
pub fn check_range(device: &str, geom: &Geometry, offset: u64, len: u64) -> Result<(), BlockError> {
    let bs = u64::from(geom.block_size);
    if !offset.is_multiple_of(bs) || !len.is_multiple_of(bs) {
        return Err(BlockError::Misaligned {
            device: device.to_string(),
            offset,
            len,
            block_size: geom.block_size,
        });
    }
    let capacity = geom.capacity();
    match offset.checked_add(len) {
        Some(end) if end <= capacity => Ok(()),
        _ => Err(BlockError::OutOfRange {
            device: device.to_string(),
            offset,
            len,
            capacity,
        }),
    }
}
