//! The simulated NVMe controller: register-level, in-process, with a simulated IOMMU and fault injection.
//!
//! [`SimController`] implements [`DeviceBacking`](crate::backing::DeviceBacking), so the
//! NVMe driver runs against it unchanged. BAR0 is memory; CC writes and doorbells
//! wake a controller thread that fetches SQEs, moves data and posts CQEs only
//! through the [`SimIommu`], which refuses unmapped IOVAs (Data Transfer Error plus
//! a recorded [`DmaFault`]). Storage is sparse RAM or a sparse file with a JSON
//! sidecar ([`SimDrive`]). [`SimFaults`] injects errors, delays, lost completions,
//! controller fatal status, surprise removal and silent corruption.
//!
//! - [`controller`]: the public handle and register file.
//! - `engine`: the controller thread (CC state machine, queues, interrupts).
//! - `admin`, `io`: the admin and NVM command sets; `prp`: PRP walking.
//! - [`iommu`]: the simulated IOMMU (all raw host-memory access).
//! - `store`: RAM or file backing; [`drive`]: persistent drives; `health`: SMART and error log.
//! - [`faults`]: fault injection.

mod admin;
pub mod controller;
pub mod drive;
mod engine;
pub mod faults;
mod health;
mod io;
pub mod iommu;
mod prp;
mod store;

pub use controller::{SimConfig, SimController, SimStats, SimTuning};
pub use drive::{SimDrive, SimDriveMeta, create_drives, list_drives};
pub use faults::{CommandMatch, FaultAction, FaultCount, FaultCounters, SimFaults};
pub use health::PersistedHealth;
pub use iommu::{DmaFault, DmaFaultReason, IOVA_BASE, SimIommu};

/// Why a simulated controller or drive could not be created or opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SimError {
    /// A host I/O operation failed.
    #[error("{path}: cannot {op}: {source}")]
    Io {
        /// File or device concerned.
        path: String,
        /// What was being done.
        op: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The sidecar is missing fields, malformed or inconsistent.
    #[error("{path}: bad simulated-drive sidecar: {reason}")]
    Sidecar {
        /// Sidecar path.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The data file does not match its sidecar.
    #[error("{path}: bad simulated-drive data file: {reason}")]
    DataFile {
        /// Data file path.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// A drive file already exists.
    #[error("{path}: already exists")]
    Exists {
        /// The existing file.
        path: String,
    },
    /// Another controller has the drive open.
    #[error("{path}: drive is in use by another simulated controller")]
    InUse {
        /// Data file path.
        path: String,
    },
    /// An invalid configuration.
    #[error("invalid simulated controller configuration: {reason}")]
    Config {
        /// What is wrong.
        reason: String,
    },
    /// A block range outside the namespace.
    #[error("{device}: LBA range {slba}+{nlb} beyond the namespace's {blocks} blocks")]
    OutOfRange {
        /// Device id.
        device: String,
        /// First block.
        slba: u64,
        /// Block count.
        nlb: u64,
        /// Namespace size in blocks.
        blocks: u64,
    },
}
