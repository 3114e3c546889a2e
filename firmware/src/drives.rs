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
    /// The simulated controller behind a `sim` drive (fault injection, re-insertion).
    pub sim: Option<Arc<SimController>>,
}

impl OpenDrive {
    /// Shut NVMe controllers down cleanly (CC.SHN), so the next start sees a clean shutdown.
    /// A controller already lost (pulled) has nothing left to shut down.
    pub async fn close(self) -> Result<(), CliError> {
        if let Some(c) = &self.controller
            && c.lost_reason().is_none()
        {
            c.shutdown().await?;
        }
        Ok(())
    }
}

/// Bring up an NVMe controller over `backing` and open namespace `nsid`.
pub async fn open_nvme(backing: Arc<dyn DeviceBacking>, nsid: u32) -> Result<OpenDrive, CliError> {
    let controller = Controller::init(backing, DriverConfig::default()).await?;
    let ns = controller.namespace(nsid)?;
    Ok(OpenDrive {
        controller: Some(controller),
        device: Arc::new(ns),
        sim: None,
    })
}

/// Open one drive.
pub async fn open(spec: &DriveSpec) -> Result<OpenDrive, CliError> {
    match spec {
        DriveSpec::Sim { path } => {
            let sim = Arc::new(SimController::open(path)?);
            let mut d = open_nvme(sim.clone(), 1).await?;
            d.sim = Some(sim);
            Ok(d)
        }
        DriveSpec::File { path } => {
            let dev = FileBlockDevice::open(path, 4096)?;
            Ok(OpenDrive {
                controller: None,
                device: Arc::new(dev),
                sim: None,
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
