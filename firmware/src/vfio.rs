//! Real NVMe drives: bind PCI functions to vfio-pci and open them through VFIO.

use crate::error::CliError;
use ingot_hal::backing::DeviceBacking;
use ingot_hal::vfio::{PciAddress, PciSysfs, VfioDevice};
use std::sync::Arc;
use std::time::Duration;

/// How long binding a function to vfio-pci may take before it is an error.
const BIND_TIMEOUT: Duration = Duration::from_secs(10);

/// Bind `pci` to vfio-pci (unbinding it from `nvme` first if needed) and open it.
pub fn open(pci: &str) -> Result<Arc<dyn DeviceBacking>, CliError> {
    let sysfs = PciSysfs::default();
    let address = PciAddress::parse(pci)?;
    sysfs.bind_vfio(&address, BIND_TIMEOUT)?;
    Ok(Arc::new(VfioDevice::open(address.as_str())?))
}

/// Every NVMe function on the PCI bus.
pub fn nvme_functions() -> Result<Vec<String>, CliError> {
    Ok(PciSysfs::default()
        .nvme_functions()?
        .iter()
        .map(|a| a.as_str().to_string())
        .collect())
}
