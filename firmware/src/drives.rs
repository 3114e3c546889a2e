//! Opening drives: a [`DriveSpec`] becomes a running NVMe controller (simulated or VFIO)
//! and a [`BlockDevice`], or a plain file device.

use crate::config::DriveSpec;
use crate::error::CliError;
use ingot_hal::backing::DeviceBacking;
use ingot_hal::blockdev::BlockDevice;
use ingot_hal::blockdev::file::FileBlockDevice;
use ingot_hal::nvme::driver::{Controller, DriverConfig};
use ingot_hal::sim::SimController;
use std::sync::Arc;

/// An open drive.
#[derive(Debug)]
pub struct OpenDrive {
    /// The NVMe controller, for NVMe drives.
    pub controller: Option<Controller>,
    /// The block device the pool uses.
    pub device: Arc<dyn BlockDevice>,
}

impl OpenDrive {
    /// Shut NVMe controllers down cleanly (CC.SHN), so the next start sees a clean shutdown.
    pub async fn close(self) -> Result<(), CliError> {
        if let Some(c) = &self.controller {
            c.shutdown().await?;
        }
        Ok(())
    }
}

/// Bring up an NVMe controller over `backing` and open namespace `nsid`.
async fn open_nvme(backing: Arc<dyn DeviceBacking>, nsid: u32) -> Result<OpenDrive, CliError> {
    let controller = Controller::init(backing, DriverConfig::default()).await?;
    let ns = controller.namespace(nsid)?;
    Ok(OpenDrive {
        controller: Some(controller),
        device: Arc::new(ns),
    })
}

/// Open one drive.
pub async fn open(spec: &DriveSpec) -> Result<OpenDrive, CliError> {
    match spec {
        DriveSpec::Sim { path } => open_nvme(Arc::new(SimController::open(path)?), 1).await,
        DriveSpec::File { path } => {
            let dev = FileBlockDevice::open(path, 4096)?;
            Ok(OpenDrive {
                controller: None,
                device: Arc::new(dev),
            })
        }
        DriveSpec::Vfio { pci, nsid } => {
            let backing = crate::vfio::open(pci)?;
            open_nvme(backing, *nsid).await
        }
    }
}

/// Open every drive, in order; on failure the ones already open are shut down.
pub async fn open_all(specs: &[DriveSpec]) -> Result<Vec<OpenDrive>, CliError> {
    let mut out = Vec::with_capacity(specs.len());
    for s in specs {
        match open(s).await {
            Ok(d) => out.push(d),
            Err(e) => {
                close_all(out).await;
                return Err(e);
            }
        }
    }
    Ok(out)
}

/// Shut every drive down, logging (not failing on) a drive that does not shut down cleanly.
pub async fn close_all(open: Vec<OpenDrive>) {
    for d in open {
        if let Err(e) = d.close().await {
            tracing::warn!(error = %e, "drive shutdown failed");
        }
    }
}
