//! Ingot's hardware abstraction layer.
//!
//! - [`dma`]: pinned, page-aligned memory that carries its IOVA.
//! - [`backing`]: the seam around one NVMe PCI function (registers, DMA, interrupts),
//!   implemented by VFIO and by the simulated controller.
//! - [`nvme`]: the NVMe specification types and the userspace driver.
//! - [`blockdev`]: the block-device seam the pool uses, with its backends.
//! - [`cpu`]: instruction-set-specific code with a safe API (AES-256-XTS with VAES/AES-NI).
//! - [`exercise`]: write/flush/read/verify exerciser for any block device (HIL and tests).
//!
//! All of Ingot's `unsafe` code lives in this crate, each block with a `// SAFETY:` comment.

pub mod backing;
pub mod blockdev;
pub mod cpu;
pub mod dma;
pub mod exercise;
pub mod nvme;
pub mod sim;
pub mod vfio;
