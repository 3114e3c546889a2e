//! Errors of controller bring-up, admin commands and recovery.

use crate::backing::BackingError;
use crate::blockdev::NvmeStatus;
use crate::dma::DmaError;

/// Why a controller-level driver operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NvmeError {
    /// CSTS.RDY did not reach the wanted value within CAP.TO.
    #[error("{device}: controller did not become {what} within {timeout_ms} ms (CSTS {csts:#x})")]
    NotReady {
        /// Device id.
        device: String,
        /// "ready" or "disabled" or "shut down".
        what: &'static str,
        /// The bound waited.
        timeout_ms: u64,
        /// Last CSTS read.
        csts: u32,
    },
    /// The controller is gone: fatal status, all-ones registers, removal, or shut down.
    #[error("{device}: device lost: {reason}")]
    DeviceLost {
        /// Device id.
        device: String,
        /// What was seen.
        reason: String,
    },
    /// An admin command completed with an error status.
    #[error("{device}: admin {op} failed: {status}")]
    Admin {
        /// Device id.
        device: String,
        /// Which admin command.
        op: &'static str,
        /// The status returned.
        status: NvmeStatus,
    },
    /// An admin command did not complete, even after a controller reset.
    #[error("{device}: admin {op} timed out")]
    AdminTimeout {
        /// Device id.
        device: String,
        /// Which admin command.
        op: &'static str,
    },
    /// DMA memory could not be had.
    #[error("{device}: DMA memory for {what}: {source}")]
    Dma {
        /// Device id.
        device: String,
        /// What the memory was for.
        what: &'static str,
        /// The cause.
        #[source]
        source: DmaError,
    },
    /// The backing refused interrupts.
    #[error("{device}: interrupts: {source}")]
    Backing {
        /// Device id.
        device: String,
        /// The cause.
        #[source]
        source: BackingError,
    },
    /// The controller cannot be driven (no NVM command set, page size, no queues...).
    #[error("{device}: unsupported controller: {reason}")]
    Unsupported {
        /// Device id.
        device: String,
        /// Why.
        reason: String,
    },
    /// A namespace is not active or its format is unusable.
    #[error("{device}: namespace {nsid}: {reason}")]
    Namespace {
        /// Device id.
        device: String,
        /// Namespace id.
        nsid: u32,
        /// Why.
        reason: String,
    },
    /// A driver thread could not be started.
    #[error("{device}: cannot start driver thread: {source}")]
    Thread {
        /// Device id.
        device: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}
