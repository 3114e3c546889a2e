//! The device-backing seam: one NVMe PCI function as the driver sees it.
//!
//! BAR0 register access, the IOMMU (DMA mapping) and interrupts. The VFIO backend
//! implements it for real hardware (and QEMU's NVMe behind an emulated IOMMU);
//! the simulated controller implements it in-process. The NVMe driver is written
//! only against this trait, so both run the same driver code.

use crate::blockdev::DeviceKind;
use crate::dma::DmaMapper;
use std::fmt;
use std::sync::Arc;
use vmm_sys_util::eventfd::EventFd;

/// Why a backing operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BackingError {
    /// Interrupt set-up failed.
    #[error("{device}: cannot set up {count} MSI-X vectors: {reason}")]
    Interrupts {
        /// Device id.
        device: String,
        /// Vectors asked for.
        count: u32,
        /// What went wrong.
        reason: String,
    },
    /// The device is gone.
    #[error("{device}: device is gone")]
    Gone {
        /// Device id.
        device: String,
    },
}

/// One NVMe PCI function: registers, DMA and interrupts.
pub trait DeviceBacking: Send + Sync + fmt::Debug {
    /// A stable name for logs and errors: the PCI address (`0000:00:04.0`) or `sim:NAME`.
    fn id(&self) -> &str;
    /// What kind of device this is.
    fn kind(&self) -> DeviceKind;
    /// Read a 32-bit BAR0 register. A removed device reads all-ones.
    fn read32(&self, offset: u64) -> u32;
    /// Write a 32-bit BAR0 register (doorbells, CC, AQA).
    fn write32(&self, offset: u64, value: u32);
    /// Read a 64-bit BAR0 register (CAP, ASQ, ACQ).
    fn read64(&self, offset: u64) -> u64 {
        let lo = u64::from(self.read32(offset));
        let hi = u64::from(self.read32(offset + 4));
        lo | (hi << 32)
    }
    /// Write a 64-bit BAR0 register, low dword first.
    fn write64(&self, offset: u64, value: u64) {
        self.write32(offset, value as u32);
        self.write32(offset + 4, (value >> 32) as u32);
    }
    /// The IOMMU through which this device reaches host memory.
    fn dma_mapper(&self) -> Arc<dyn DmaMapper>;
    /// MSI-X vectors the device offers (0 if none: the driver then polls).
    fn msix_count(&self) -> u32;
    /// Route MSI-X vectors `0..count` to eventfds (non-blocking), one per vector.
    /// Must be called before CC.EN=1: QEMU arms the admin CQ vector at enable time.
    fn enable_msix(&self, count: u32) -> Result<Vec<Arc<EventFd>>, BackingError>;
    /// An eventfd signalled when the platform asks for the device back (VFIO request
    /// interrupt on hot-unplug). `None` where the backend has no such channel.
    fn removal_request(&self) -> Option<Arc<EventFd>>;
}
