//! The binary's error type: every failure a subcommand can meet, with its context.

use crate::config::ConfigError;
use ingot_hal::blockdev::BlockError;
use ingot_hal::nvme::driver::NvmeError;
use ingot_hal::sim::SimError;
use ingot_hal::vfio::PciError;
use ingot_hal::vfio::VfioError;
use ingot_pool::PoolError;

/// A failed subcommand. Printed as `ingot: error: ...` with its causes; exit status 1.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// Config file trouble.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Simulated-drive trouble.
    #[error(transparent)]
    Sim(#[from] SimError),
    /// NVMe driver trouble.
    #[error(transparent)]
    Nvme(#[from] NvmeError),
    /// VFIO trouble.
    #[error(transparent)]
    Vfio(#[from] VfioError),
    /// PCI sysfs trouble (binding to vfio-pci).
    #[error(transparent)]
    Pci(#[from] PciError),
    /// Pool trouble.
    #[error(transparent)]
    Pool(#[from] PoolError),
    /// Block-device trouble.
    #[error(transparent)]
    Block(#[from] BlockError),
    /// The running appliance refused or did not answer.
    #[error(transparent)]
    Client(#[from] crate::client::ClientError),
    /// Bad command-line usage that clap cannot catch.
    #[error("{0}")]
    Usage(String),
    /// A host I/O error with what was being done.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

impl CliError {
    /// An I/O error with context.
    pub fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> CliError {
        let what = what.into();
        move |source| CliError::Io { what, source }
    }
}
