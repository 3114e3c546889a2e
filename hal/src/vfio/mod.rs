//! The VFIO backend: real NVMe functions through the type1 IOMMU.
//!
//! - [`pci`]: find NVMe functions in sysfs and bind them to vfio-pci.
//! - [`sys`]: the syscall seam ([`VfioSys`]) and the real ioctls ([`LinuxVfio`]).
//! - [`iova`]: the IOVA allocator behind DMA mapping.
//! - [`container`]: the container and its groups, and DMA mapping ([`VfioContainer`]).
//! - [`device`]: one PCI function as a [`crate::backing::DeviceBacking`] ([`VfioDevice`]).
//!
//! The sequence is the kernel's documented one (Documentation/driver-api/vfio.rst):
//! open the container, check the API version and the type1v2 extension, open the group,
//! check it is viable, attach it to the container, select the IOMMU, get the device fd,
//! then map BAR0, enable memory decoding and bus mastering, and route interrupts to eventfds.

pub mod container;
pub mod device;
#[cfg(test)]
mod fake;
pub mod iova;
pub mod pci;
pub mod sys;

pub use container::VfioContainer;
pub use device::VfioDevice;
pub use pci::{PciAddress, PciError, PciSysfs};
pub use sys::{LinuxVfio, VfioSys};

use std::io;
use std::path::PathBuf;

/// Why a VFIO device could not be opened or driven.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VfioError {
    /// A sysfs lookup or binding step failed.
    #[error(transparent)]
    Pci(#[from] PciError),
    /// The device is bound to another driver (or none).
    #[error(
        "{device}: bound to {driver}, not vfio-pci (bind it with driver_override, see images/README.md)"
    )]
    NotBoundToVfio {
        /// PCI address.
        device: String,
        /// Its current driver, or "no driver".
        driver: String,
    },
    /// `/dev/vfio/vfio` or the group node is missing.
    #[error("{path}: not found; are the vfio and vfio-pci modules loaded and the device bound?")]
    NodeMissing {
        /// The missing node.
        path: PathBuf,
    },
    /// Opening a VFIO node was refused.
    #[error("{path}: permission denied; run as root or give this user the group node")]
    Permission {
        /// The node.
        path: PathBuf,
    },
    /// The group is already open (by another process, or a second device of this one).
    #[error("{path}: busy; the IOMMU group is already in use")]
    GroupBusy {
        /// The group node.
        path: PathBuf,
    },
    /// The kernel speaks another VFIO API.
    #[error("VFIO API version {got}, expected {expected}")]
    ApiVersion {
        /// Reported version.
        got: i32,
        /// Version this code speaks.
        expected: u32,
    },
    /// The kernel has no type1v2 IOMMU driver.
    #[error("VFIO type1v2 IOMMU not supported; load vfio_iommu_type1 and enable the IOMMU")]
    NoType1Iommu,
    /// Not every device of the group is bound to vfio-pci (or unbound).
    #[error(
        "IOMMU group {group} is not viable: every device in /sys/kernel/iommu_groups/{group}/devices must be bound to vfio-pci or have no driver"
    )]
    GroupNotViable {
        /// The group number.
        group: u32,
    },
    /// The device fd is not a PCI device.
    #[error("{device}: VFIO device is not a PCI device")]
    NotPci {
        /// PCI address.
        device: String,
    },
    /// BAR0 is missing or unusable.
    #[error("{device}: BAR0 unusable: {reason}")]
    Bar0 {
        /// PCI address.
        device: String,
        /// What is wrong with it.
        reason: String,
    },
    /// An ioctl or other syscall failed.
    #[error("{device}: {op} failed: {source}")]
    Syscall {
        /// PCI address or node.
        device: String,
        /// Which call.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
}

impl VfioError {
    /// Map an `open()` failure of a VFIO node to the clearest error.
    fn open_failed(path: PathBuf, e: io::Error) -> Self {
        match e.raw_os_error() {
            Some(libc::ENOENT) | Some(libc::ENODEV) | Some(libc::ENXIO) => {
                VfioError::NodeMissing { path }
            }
            Some(libc::EACCES) | Some(libc::EPERM) => VfioError::Permission { path },
            Some(libc::EBUSY) => VfioError::GroupBusy { path },
            _ => VfioError::Syscall {
                device: path.display().to_string(),
                op: "open",
                source: e,
            },
        }
    }
}
