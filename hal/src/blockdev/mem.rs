//! A RAM-backed block device: the fastest backend, for unit tests and benchmarks.

use super::{
    BlockDevice, BlockError, DeviceIdentity, DeviceKind, Geometry, HealthInfo, WriteFlags,
    check_range,
};
use async_trait::async_trait;
use parking_lot::RwLock;

/// A block device held in memory. Writes are durable immediately (no volatile cache).
#[derive(Debug)]
pub struct MemBlockDevice {
    name: String,
    geom: Geometry,
    data: RwLock<Vec<u8>>,
}

impl MemBlockDevice {
    /// A zeroed device of `blocks` blocks of `block_size` bytes.
    pub fn new(name: impl Into<String>, block_size: u32, blocks: u64) -> Self {
        let geom = Geometry {
            block_size,
            blocks,
            max_transfer: 1 << 20,
            volatile_write_cache: false,
        };
        let len = usize::try_from(geom.capacity()).unwrap_or(usize::MAX);
        MemBlockDevice {
            name: name.into(),
            geom,
            data: RwLock::new(vec![0; len]),
        }
    }

    /// A copy of the whole device's bytes (for tests that inspect the raw image).
    pub fn snapshot(&self) -> Vec<u8> {
        self.data.read().clone()
    }

    fn span(&self, offset: u64, len: u64) -> Result<std::ops::Range<usize>, BlockError> {
        check_range(&self.name, &self.geom, offset, len)?;
        // In range of a Vec that exists, so both fit in usize.
        let start = offset as usize;
        Ok(start..start + len as usize)
    }
}

#[async_trait]
impl BlockDevice for MemBlockDevice {
    fn geometry(&self) -> Geometry {
        self.geom
    }

    fn identity(&self) -> DeviceIdentity {
        DeviceIdentity {
            kind: DeviceKind::Memory,
            location: self.name.clone(),
            model: "Ingot RAM disk".into(),
            serial: self.name.clone(),
            firmware: env!("CARGO_PKG_VERSION").into(),
        }
    }

    async fn read(&self, offset: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let r = self.span(offset, buf.len() as u64)?;
        buf.copy_from_slice(&self.data.read()[r]);
        Ok(())
    }

    async fn write(&self, offset: u64, buf: &[u8], _flags: WriteFlags) -> Result<(), BlockError> {
        let r = self.span(offset, buf.len() as u64)?;
        self.data.write()[r].copy_from_slice(buf);
        Ok(())
    }

    async fn flush(&self) -> Result<(), BlockError> {
        Ok(())
    }

    async fn deallocate(&self, offset: u64, len: u64) -> Result<(), BlockError> {
        self.write_zeroes(offset, len).await
    }

    async fn write_zeroes(&self, offset: u64, len: u64) -> Result<(), BlockError> {
        let r = self.span(offset, len)?;
        self.data.write()[r].fill(0);
        Ok(())
    }

    async fn health(&self) -> Result<HealthInfo, BlockError> {
        Ok(HealthInfo::default())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn roundtrip_and_bounds() {
        let d = MemBlockDevice::new("m0", 512, 16);
        d.write(512, &[7u8; 1024], WriteFlags::NONE).await.unwrap();
        let mut b = vec![0u8; 1536];
        d.read(0, &mut b).await.unwrap();
        assert!(b[..512].iter().all(|&x| x == 0));
        assert!(b[512..].iter().all(|&x| x == 7));
        assert!(matches!(
            d.read(1, &mut b[..512]).await,
            Err(BlockError::Misaligned { .. })
        ));
        assert!(matches!(
            d.read(15 * 512, &mut b[..1024]).await,
            Err(BlockError::OutOfRange { .. })
        ));
        d.write_zeroes(512, 512).await.unwrap();
        d.read(512, &mut b[..512]).await.unwrap();
        assert!(b[..512].iter().all(|&x| x == 0));
    }
}
