//! A VFIO container with its groups: one IOMMU domain, and DMA mapping into it.
//!
//! The container owns the group fds it attached. It implements [`DmaMapper`]: a mapping
//! takes an IOVA from the [`IovaAllocator`] and pins the host pages with
//! `VFIO_IOMMU_MAP_DMA`; unmapping gives the IOVA back for reuse. DMA buffers keep the
//! container alive (through their `Arc<dyn DmaMapper>`), so it outlives every mapping.

use super::VfioError;
use super::iova::{FALLBACK_RANGE, IovaAllocator};
use super::sys::VfioSys;
use crate::dma::{DmaError, DmaMapper, PAGE_SIZE};
use parking_lot::Mutex;
use std::fmt;
use std::os::fd::RawFd;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::Arc;
use vfio_bindings::bindings::vfio as b;

struct Inner {
    /// Attached groups: (number, fd).
    groups: Vec<(u32, RawFd)>,
    /// IOVA space; `None` until the IOMMU is set (first group attached).
    iova: Option<IovaAllocator>,
}

/// An open `/dev/vfio/vfio` container.
pub struct VfioContainer {
    sys: Arc<dyn VfioSys>,
    fd: RawFd,
    name: String,
    inner: Mutex<Inner>,
}

impl fmt::Debug for VfioContainer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.inner.lock();
        f.debug_struct("VfioContainer")
            .field("name", &self.name)
            .field("fd", &self.fd)
            .field("groups", &inner.groups)
            .finish()
    }
}

impl VfioContainer {
    /// Open the container node in `dev_vfio` (normally `/dev/vfio/vfio`) and check the API
    /// version and the type1v2 IOMMU. `name` labels logs and errors (the device address).
    pub fn open(sys: Arc<dyn VfioSys>, dev_vfio: &Path, name: &str) -> Result<Self, VfioError> {
        let path = dev_vfio.join("vfio");
        let fd = sys
            .open(&path)
            .map_err(|e| VfioError::open_failed(path.clone(), e))?;
        let c = VfioContainer {
            sys,
            fd,
            name: name.to_string(),
            inner: Mutex::new(Inner {
                groups: Vec::new(),
                iova: None,
            }),
        };
        let version = c
            .sys
            .api_version(fd)
            .map_err(|e| c.syscall("VFIO_GET_API_VERSION", e))?;
        if version != b::VFIO_API_VERSION as i32 {
            return Err(VfioError::ApiVersion {
                got: version,
                expected: b::VFIO_API_VERSION,
            });
        }
        let type1v2 = c
            .sys
            .check_extension(fd, b::VFIO_TYPE1v2_IOMMU)
            .map_err(|e| c.syscall("VFIO_CHECK_EXTENSION", e))?;
        if !type1v2 {
            return Err(VfioError::NoType1Iommu);
        }
        Ok(c)
    }

    fn syscall(&self, op: &'static str, source: std::io::Error) -> VfioError {
        VfioError::Syscall {
            device: self.name.clone(),
            op,
            source,
        }
    }

    /// Open group `group` from `dev_vfio`, check it is viable and attach it. The first group
    /// attached selects the type1v2 IOMMU and sets up the IOVA space. Returns the group fd,
    /// which stays owned by the container.
    pub fn attach_group(&self, dev_vfio: &Path, group: u32) -> Result<RawFd, VfioError> {
        let mut inner = self.inner.lock();
        if let Some(&(_, fd)) = inner.groups.iter().find(|(g, _)| *g == group) {
            return Ok(fd);
        }
        let path = dev_vfio.join(group.to_string());
        let gfd = self
            .sys
            .open(&path)
            .map_err(|e| VfioError::open_failed(path.clone(), e))?;
        let result = (|| {
            let flags = self
                .sys
                .group_status(gfd)
                .map_err(|e| self.syscall("VFIO_GROUP_GET_STATUS", e))?;
            if flags & b::VFIO_GROUP_FLAGS_VIABLE == 0 {
                return Err(VfioError::GroupNotViable { group });
            }
            self.sys
                .group_set_container(gfd, self.fd)
                .map_err(|e| self.syscall("VFIO_GROUP_SET_CONTAINER", e))?;
            if inner.iova.is_none() {
                if let Err(e) = self.sys.set_iommu(self.fd, b::VFIO_TYPE1v2_IOMMU) {
                    let _ = self.sys.group_unset_container(gfd);
                    return Err(self.syscall("VFIO_SET_IOMMU", e));
                }
                let ranges = match self.sys.iommu_info(self.fd) {
                    Ok(info) if !info.iova_ranges.is_empty() => info.iova_ranges,
                    Ok(_) => vec![FALLBACK_RANGE],
                    Err(e) => {
                        tracing::warn!(device = %self.name, error = %e,
                            "VFIO_IOMMU_GET_INFO failed; using the fallback IOVA range");
                        vec![FALLBACK_RANGE]
                    }
                };
                tracing::debug!(device = %self.name, ?ranges, "IOVA ranges");
                inner.iova = Some(IovaAllocator::new(&ranges));
            }
            Ok(())
        })();
        match result {
            Ok(()) => {
                inner.groups.push((group, gfd));
                Ok(gfd)
            }
            Err(e) => {
                self.sys.close(gfd);
                Err(e)
            }
        }
    }

    /// Bytes currently mapped for DMA through this container.
    pub fn mapped_bytes(&self) -> u64 {
        self.inner
            .lock()
            .iova
            .as_ref()
            .map_or(0, IovaAllocator::allocated_bytes)
    }
}

impl DmaMapper for VfioContainer {
    unsafe fn map(&self, vaddr: NonNull<u8>, len: usize) -> Result<u64, DmaError> {
        if len == 0 || !len.is_multiple_of(PAGE_SIZE) {
            return Err(DmaError::BadLength { len });
        }
        let mut inner = self.inner.lock();
        let Some(alloc) = inner.iova.as_mut() else {
            return Err(DmaError::Map {
                iova: 0,
                len,
                reason: format!("{}: no IOMMU group attached", self.name),
            });
        };
        let iova = alloc
            .alloc(len as u64)
            .ok_or(DmaError::IovaExhausted { len })?;
        // SAFETY: the caller of `DmaMapper::map` promised `vaddr..vaddr+len` stays valid until
        // `unmap(iova, len)`, which is exactly the contract of `VfioSys::map_dma`.
        let mapped = unsafe {
            self.sys
                .map_dma(self.fd, vaddr.as_ptr() as u64, iova, len as u64)
        };
        if let Err(e) = mapped {
            // The IOVA was never mapped, so it can go straight back.
            let _ = alloc.free(iova, len as u64);
            return Err(DmaError::Map {
                iova,
                len,
                reason: format!("{}: VFIO_IOMMU_MAP_DMA: {e}", self.name),
            });
        }
        Ok(iova)
    }

    fn unmap(&self, iova: u64, len: usize) {
        let mut inner = self.inner.lock();
        match self.sys.unmap_dma(self.fd, iova, len as u64) {
            Ok(n) if n == len as u64 => {
                if let Some(alloc) = inner.iova.as_mut()
                    && let Err(e) = alloc.free(iova, len as u64)
                {
                    tracing::error!(device = %self.name, error = %e, "IOVA bookkeeping mismatch");
                }
            }
            Ok(n) => {
                // Leave the IOVA allocated: reusing a range that may still be mapped could
                // hand the device someone else's memory.
                tracing::error!(device = %self.name, iova, len, unmapped = n,
                    "VFIO_IOMMU_UNMAP_DMA unmapped a different size; IOVA range retired");
            }
            Err(e) => {
                tracing::error!(device = %self.name, iova, len, error = %e,
                    "VFIO_IOMMU_UNMAP_DMA failed; IOVA range retired");
            }
        }
    }
}

impl Drop for VfioContainer {
    fn drop(&mut self) {
        let inner = self.inner.get_mut();
        for &(group, gfd) in &inner.groups {
            if let Err(e) = self.sys.group_unset_container(gfd) {
                tracing::warn!(device = %self.name, group, error = %e, "VFIO_GROUP_UNSET_CONTAINER failed");
            }
            self.sys.close(gfd);
        }
        // Closing the container tears down the IOMMU domain and every remaining mapping.
        self.sys.close(self.fd);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dma::DmaBuffer;
    use crate::vfio::fake::{Fail, FakeVfio};

    fn setup(fake: &Arc<FakeVfio>) -> Arc<VfioContainer> {
        let c = VfioContainer::open(fake.clone(), Path::new("/dev/vfio"), "test").unwrap();
        c.attach_group(Path::new("/dev/vfio"), 3).unwrap();
        Arc::new(c)
    }

    #[test]
    fn open_checks_version_and_extension() {
        let fake = FakeVfio::new();
        fake.state.lock().api_version = 1;
        let e = VfioContainer::open(fake.clone(), Path::new("/dev/vfio"), "t").unwrap_err();
        assert!(matches!(e, VfioError::ApiVersion { got: 1, .. }), "{e}");
        let fake = FakeVfio::new();
        fake.state.lock().type1v2 = false;
        let e = VfioContainer::open(fake.clone(), Path::new("/dev/vfio"), "t").unwrap_err();
        assert!(matches!(e, VfioError::NoType1Iommu), "{e}");
        // Every fd opened was closed again.
        assert!(fake.state.lock().open_fds.is_empty());
    }

    #[test]
    fn missing_or_forbidden_nodes_are_named() {
        let fake = FakeVfio::new();
        fake.state.lock().fail = Some(Fail::Open(libc::ENOENT));
        let e = VfioContainer::open(fake.clone(), Path::new("/dev/vfio"), "t").unwrap_err();
        assert!(
            matches!(&e, VfioError::NodeMissing { path } if path.ends_with("vfio")),
            "{e}"
        );
        fake.state.lock().fail = Some(Fail::Open(libc::EACCES));
        let e = VfioContainer::open(fake.clone(), Path::new("/dev/vfio"), "t").unwrap_err();
        assert!(matches!(e, VfioError::Permission { .. }), "{e}");
    }

    #[test]
    fn non_viable_group_is_refused_and_closed() {
        let fake = FakeVfio::new();
        fake.state.lock().viable = false;
        let c = VfioContainer::open(fake.clone(), Path::new("/dev/vfio"), "t").unwrap();
        let e = c.attach_group(Path::new("/dev/vfio"), 7).unwrap_err();
        assert!(matches!(e, VfioError::GroupNotViable { group: 7 }), "{e}");
        drop(c);
        assert!(fake.state.lock().open_fds.is_empty());
    }

    #[test]
    fn attach_sets_iommu_once_and_drop_detaches() {
        let fake = FakeVfio::new();
        let c = setup(&fake);
        c.attach_group(Path::new("/dev/vfio"), 3).unwrap(); // same group: no-op
        c.attach_group(Path::new("/dev/vfio"), 4).unwrap();
        {
            let s = fake.state.lock();
            assert_eq!(s.set_iommu_calls, 1);
            assert_eq!(s.attached_groups.len(), 2);
        }
        drop(c);
        let s = fake.state.lock();
        assert!(s.attached_groups.is_empty());
        assert!(s.open_fds.is_empty());
    }

    #[test]
    fn dma_buffers_map_at_nonzero_iovas_and_unmap_on_drop() {
        let fake = FakeVfio::new();
        let c = setup(&fake);
        let mapper: Arc<dyn DmaMapper> = c.clone();
        let a = DmaBuffer::alloc(mapper.clone(), 4096).unwrap();
        let b2 = DmaBuffer::alloc(mapper.clone(), 3 * 4096 + 1).unwrap();
        assert_ne!(a.iova(), 0);
        assert_eq!(b2.len(), 4 * 4096);
        {
            let s = fake.state.lock();
            assert_eq!(s.mappings.get(&a.iova()).map(|m| m.1), Some(4096));
            assert_eq!(
                s.mappings.get(&b2.iova()).map(|m| m.0),
                Some(b2.host_ptr().as_ptr() as u64)
            );
        }
        assert_eq!(c.mapped_bytes(), 5 * 4096);
        let freed = a.iova();
        drop(a);
        assert!(!fake.state.lock().mappings.contains_key(&freed));
        // The freed IOVA is reused.
        let again = DmaBuffer::alloc(mapper, 4096).unwrap();
        assert_eq!(again.iova(), freed);
        drop((again, b2));
        assert!(fake.state.lock().mappings.is_empty());
        assert_eq!(c.mapped_bytes(), 0);
    }

    #[test]
    fn iova_ranges_from_the_kernel_are_respected() {
        let fake = FakeVfio::new();
        fake.state.lock().iova_ranges = vec![(0, 0xfff), (0x4000_0000, 0x4000_1fff)];
        let c = setup(&fake);
        let mapper: Arc<dyn DmaMapper> = c;
        let a = DmaBuffer::alloc(mapper.clone(), 8192).unwrap();
        assert_eq!(a.iova(), 0x4000_0000);
        let e = DmaBuffer::alloc(mapper, 4096).unwrap_err();
        assert!(matches!(e, DmaError::IovaExhausted { .. }), "{e}");
    }

    #[test]
    fn failed_map_returns_the_iova_and_failed_unmap_retires_it() {
        let fake = FakeVfio::new();
        let c = setup(&fake);
        let mapper: Arc<dyn DmaMapper> = c.clone();
        fake.state.lock().fail = Some(Fail::MapDma);
        let e = DmaBuffer::alloc(mapper.clone(), 4096).unwrap_err();
        assert!(matches!(e, DmaError::Map { .. }), "{e}");
        assert_eq!(c.mapped_bytes(), 0);
        fake.state.lock().fail = None;
        let a = DmaBuffer::alloc(mapper.clone(), 4096).unwrap();
        let first = a.iova();
        fake.state.lock().fail = Some(Fail::UnmapDma);
        drop(a);
        fake.state.lock().fail = None;
        // The IOVA whose unmap failed is never handed out again.
        let b2 = DmaBuffer::alloc(mapper, 4096).unwrap();
        assert_ne!(b2.iova(), first);
    }
}
