//! TEMPORARY stand-in for the `codec` helper's `raid::vdev` module, with the same names and
//! shapes, so the engine builds and tests before the RAID part of `h/codec` lands.
//! Deleted once it is merged: only `io.rs` and `pool.rs` refer to it.

use ingot_hal::blockdev::{BlockDevice, WriteFlags};
use std::sync::Arc;

/// Sector size of the pool address space.
pub const SECTOR: usize = 4096;

/// RAID layouts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// RAID0.
    Stripe,
    /// n-way mirror.
    Mirror,
    /// Striped mirrors.
    Raid10,
    /// Single parity.
    Raidz1,
    /// Double parity.
    Raidz2,
}

/// Vdev error.
#[derive(Debug, thiserror::Error)]
#[error("vdev: {0}")]
pub struct VdevError(pub String);

/// Result of a read.
#[derive(Debug)]
pub struct ReadOutcome {
    /// Data.
    pub data: Vec<u8>,
    /// Columns that failed.
    pub bad_columns: Vec<usize>,
    /// Whether repaired.
    pub repaired: bool,
}

/// Shim vdev: single device stripe or n-way mirror.
#[derive(Debug)]
pub struct Vdev {
    layout: Layout,
    devices: Vec<Option<Arc<dyn BlockDevice>>>,
    off: u64,
    len: u64,
}

impl Vdev {
    /// New vdev.
    pub fn new(
        layout: Layout,
        devices: Vec<Option<Arc<dyn BlockDevice>>>,
        data_offset_bytes: u64,
        data_len_bytes: u64,
    ) -> Result<Self, VdevError> {
        match layout {
            Layout::Stripe if devices.len() == 1 => {}
            Layout::Mirror if !devices.is_empty() => {}
            _ => return Err(VdevError("shim supports 1-device stripe and mirror".into())),
        }
        Ok(Vdev {
            layout,
            devices,
            off: data_offset_bytes,
            len: data_len_bytes,
        })
    }
    /// Capacity.
    pub fn capacity_sectors(&self) -> u64 {
        self.len / SECTOR as u64
    }
    /// Allocated sectors for D data sectors.
    pub fn asize(&self, data_sectors: u64) -> u64 {
        data_sectors
    }
    /// Device failures tolerated.
    pub fn redundancy(&self) -> usize {
        match self.layout {
            Layout::Mirror => self.devices.len() - 1,
            _ => 0,
        }
    }
    /// Write.
    pub async fn write(&self, addr: u64, data: &[u8]) -> Result<(), VdevError> {
        for d in self.devices.iter().flatten() {
            d.write(self.off + addr * SECTOR as u64, data, WriteFlags::NONE)
                .await
                .map_err(|e| VdevError(e.to_string()))?;
        }
        Ok(())
    }
    /// Read, verifying.
    pub async fn read(
        &self,
        addr: u64,
        data_sectors: u64,
        verify: &(dyn Fn(&[u8]) -> bool + Send + Sync),
    ) -> Result<ReadOutcome, VdevError> {
        let mut bad = Vec::new();
        for (i, d) in self.devices.iter().enumerate() {
            let Some(d) = d else { continue };
            let mut buf = vec![0u8; data_sectors as usize * SECTOR];
            if d.read(self.off + addr * SECTOR as u64, &mut buf).await.is_ok() && verify(&buf) {
                return Ok(ReadOutcome {
                    data: buf,
                    bad_columns: bad,
                    repaired: false,
                });
            }
            bad.push(i);
        }
        Err(VdevError(format!("sector {addr}: no copy verifies")))
    }
    /// Flush.
    pub async fn flush(&self) -> Result<(), VdevError> {
        for d in self.devices.iter().flatten() {
            d.flush().await.map_err(|e| VdevError(e.to_string()))?;
        }
        Ok(())
    }
}
