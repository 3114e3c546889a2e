//! A fake [`VfioSys`] for unit tests: an in-memory container, group and NVMe-like device.
//!
//! It keeps the kernel's bookkeeping (open fds, attached groups, DMA mappings, interrupt
//! routes, mmaps) so tests can check the backend opens, maps and releases exactly what it
//! should, and it can be told to fail a chosen syscall.

use super::sys::{DeviceInfo, IommuInfo, IrqInfo, RegionInfo, VfioSys};
use parking_lot::Mutex;
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::os::fd::RawFd;
use std::path::Path;
use std::ptr::NonNull;
use std::sync::Arc;
use vfio_bindings::bindings::vfio as b;

/// Where the fake puts BAR0 in the device fd (vfio-pci uses `index << 40`).
pub const FAKE_BAR0_OFFSET: u64 = 0;
/// Where the fake puts config space in the device fd.
pub const FAKE_CONFIG_OFFSET: u64 = 7 << 40;
const BAR_BYTES: usize = 0x4000;

/// A syscall the fake should fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fail {
    /// `open` fails with this errno.
    Open(i32),
    /// `VFIO_GROUP_GET_DEVICE_FD` fails with this errno.
    GetDeviceFd(i32),
    /// `VFIO_IOMMU_MAP_DMA` fails.
    MapDma,
    /// `VFIO_IOMMU_UNMAP_DMA` fails.
    UnmapDma,
    /// `mmap` fails.
    Mmap,
}

/// The fake kernel's state.
#[derive(Debug)]
pub struct FakeState {
    next_fd: RawFd,
    /// Open fds and what they are.
    pub open_fds: BTreeMap<RawFd, String>,
    /// Every path opened.
    pub opened_paths: Vec<String>,
    /// What `VFIO_GET_API_VERSION` returns.
    pub api_version: i32,
    /// Whether type1v2 is supported.
    pub type1v2: bool,
    /// Whether groups are viable.
    pub viable: bool,
    /// `VFIO_SET_IOMMU` calls.
    pub set_iommu_calls: u32,
    /// Group fds attached to a container.
    pub attached_groups: BTreeSet<RawFd>,
    /// IOVA ranges reported (empty: capability absent).
    pub iova_ranges: Vec<(u64, u64)>,
    /// Live DMA mappings: iova -> (vaddr, size).
    pub mappings: BTreeMap<u64, (u64, u64)>,
    /// A syscall to fail.
    pub fail: Option<Fail>,
    /// BAR0 size reported.
    pub bar0_size: u64,
    /// PCI config space.
    pub config: Vec<u8>,
    /// MSI-X vectors offered.
    pub msix_count: u32,
    /// Request interrupts offered.
    pub req_count: u32,
    /// Interrupt routes: index -> eventfds.
    pub irqs: BTreeMap<u32, Vec<RawFd>>,
    /// Disable calls for MSI-X.
    pub irq_disables: u32,
    /// Live BAR mmaps.
    pub live_mmaps: u32,
}

/// The fake kernel.
#[derive(Debug)]
pub struct FakeVfio {
    /// Its state, for tests to set up and inspect.
    pub state: Mutex<FakeState>,
    bar: NonNull<u32>,
}

// SAFETY: `bar` is a heap allocation owned by the fake for its whole life, accessed only with
// volatile 32-bit reads and writes; sharing it between threads is what MMIO looks like.
unsafe impl Send for FakeVfio {}
// SAFETY: as above.
unsafe impl Sync for FakeVfio {}

impl Drop for FakeVfio {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with exactly this layout and never freed elsewhere.
        unsafe { std::alloc::dealloc(self.bar.as_ptr().cast(), Self::layout()) };
    }
}

impl FakeVfio {
    fn layout() -> std::alloc::Layout {
        // BAR_BYTES and 4096 are a valid size/alignment pair.
        std::alloc::Layout::from_size_align(BAR_BYTES, 4096).expect("valid layout")
    }

    /// A fake kernel with one viable group and a QEMU-NVMe-like device.
    pub fn new() -> Arc<Self> {
        // SAFETY: non-zero size layout.
        let raw = unsafe { std::alloc::alloc_zeroed(Self::layout()) };
        let bar = NonNull::new(raw.cast::<u32>()).expect("allocation");
        let mut config = vec![0u8; 256];
        config[0..4].copy_from_slice(&0x0010_1b36u32.to_le_bytes()); // 1b36:0010
        config[4..6].copy_from_slice(&0x0400u16.to_le_bytes()); // INTx disabled
        Arc::new(FakeVfio {
            state: Mutex::new(FakeState {
                next_fd: 100,
                open_fds: BTreeMap::new(),
                opened_paths: Vec::new(),
                api_version: 0,
                type1v2: true,
                viable: true,
                set_iommu_calls: 0,
                attached_groups: BTreeSet::new(),
                iova_ranges: vec![(0, 0xfedf_ffff), (0xfef0_0000, (1 << 39) - 1)],
                mappings: BTreeMap::new(),
                fail: None,
                bar0_size: BAR_BYTES as u64,
                config,
                msix_count: 8,
                req_count: 1,
                irqs: BTreeMap::new(),
                irq_disables: 0,
                live_mmaps: 0,
            }),
            bar,
        })
    }

    /// Read BAR0 as the device sees it.
    pub fn bar_read32(&self, offset: u64) -> u32 {
        assert!(offset.is_multiple_of(4) && (offset as usize) < BAR_BYTES);
        // SAFETY: in bounds and aligned (asserted) in the live allocation.
        unsafe { self.bar.as_ptr().add(offset as usize / 4).read_volatile() }
    }

    /// Set a BAR0 register as the device would.
    pub fn bar_write32(&self, offset: u64, v: u32) {
        assert!(offset.is_multiple_of(4) && (offset as usize) < BAR_BYTES);
        // SAFETY: in bounds and aligned (asserted) in the live allocation.
        unsafe { self.bar.as_ptr().add(offset as usize / 4).write_volatile(v) }
    }

    /// Signal an eventfd the way the kernel does when an interrupt fires.
    pub fn signal(&self, fd: RawFd) {
        let one = 1u64.to_ne_bytes();
        // SAFETY: writing 8 bytes from a live buffer to an eventfd the test owns.
        let n = unsafe { libc::write(fd, one.as_ptr().cast(), 8) };
        assert_eq!(n, 8);
    }

    fn new_fd(s: &mut FakeState, what: String) -> RawFd {
        let fd = s.next_fd;
        s.next_fd += 1;
        s.open_fds.insert(fd, what);
        fd
    }

    fn failing(&self, f: Fail) -> bool {
        self.state.lock().fail == Some(f)
    }
}

fn einval() -> io::Error {
    io::Error::from_raw_os_error(libc::EINVAL)
}

impl VfioSys for FakeVfio {
    fn open(&self, path: &Path) -> io::Result<RawFd> {
        let mut s = self.state.lock();
        s.opened_paths.push(path.display().to_string());
        if let Some(Fail::Open(errno)) = s.fail {
            return Err(io::Error::from_raw_os_error(errno));
        }
        Ok(Self::new_fd(&mut s, path.display().to_string()))
    }

    fn close(&self, fd: RawFd) {
        let mut s = self.state.lock();
        assert!(s.open_fds.remove(&fd).is_some(), "close of unknown fd {fd}");
    }

    fn api_version(&self, _container: RawFd) -> io::Result<i32> {
        Ok(self.state.lock().api_version)
    }

    fn check_extension(&self, _container: RawFd, extension: u32) -> io::Result<bool> {
        Ok(extension == b::VFIO_TYPE1v2_IOMMU && self.state.lock().type1v2)
    }

    fn set_iommu(&self, _container: RawFd, iommu_type: u32) -> io::Result<()> {
        let mut s = self.state.lock();
        if iommu_type != b::VFIO_TYPE1v2_IOMMU || s.attached_groups.is_empty() {
            return Err(einval());
        }
        s.set_iommu_calls += 1;
        Ok(())
    }

    fn iommu_info(&self, _container: RawFd) -> io::Result<IommuInfo> {
        Ok(IommuInfo {
            page_sizes: 0x4000_1000,
            iova_ranges: self.state.lock().iova_ranges.clone(),
        })
    }

    unsafe fn map_dma(
        &self,
        _container: RawFd,
        vaddr: u64,
        iova: u64,
        size: u64,
    ) -> io::Result<()> {
        if self.failing(Fail::MapDma) {
            return Err(io::Error::from_raw_os_error(libc::ENOMEM));
        }
        let mut s = self.state.lock();
        if iova == 0 || size == 0 || !iova.is_multiple_of(4096) || !size.is_multiple_of(4096) {
            return Err(einval());
        }
        let overlaps = s
            .mappings
            .iter()
            .any(|(&i, &(_, l))| iova < i + l && i < iova + size);
        if overlaps {
            return Err(io::Error::from_raw_os_error(libc::EEXIST));
        }
        s.mappings.insert(iova, (vaddr, size));
        Ok(())
    }

    fn unmap_dma(&self, _container: RawFd, iova: u64, size: u64) -> io::Result<u64> {
        if self.failing(Fail::UnmapDma) {
            return Err(einval());
        }
        let mut s = self.state.lock();
        match s.mappings.get(&iova) {
            Some(&(_, l)) if l == size => {
                s.mappings.remove(&iova);
                Ok(size)
            }
            _ => Ok(0),
        }
    }

    fn group_status(&self, _group: RawFd) -> io::Result<u32> {
        let s = self.state.lock();
        Ok(if s.viable {
            b::VFIO_GROUP_FLAGS_VIABLE
        } else {
            0
        })
    }

    fn group_set_container(&self, group: RawFd, _container: RawFd) -> io::Result<()> {
        self.state.lock().attached_groups.insert(group);
        Ok(())
    }

    fn group_unset_container(&self, group: RawFd) -> io::Result<()> {
        self.state.lock().attached_groups.remove(&group);
        Ok(())
    }

    fn group_device_fd(&self, group: RawFd, name: &str) -> io::Result<RawFd> {
        let mut s = self.state.lock();
        if let Some(Fail::GetDeviceFd(errno)) = s.fail {
            return Err(io::Error::from_raw_os_error(errno));
        }
        if !s.attached_groups.contains(&group) {
            return Err(einval());
        }
        Ok(Self::new_fd(&mut s, format!("device {name}")))
    }

    fn device_info(&self, _device: RawFd) -> io::Result<DeviceInfo> {
        Ok(DeviceInfo {
            flags: b::VFIO_DEVICE_FLAGS_PCI,
            num_regions: 9,
            num_irqs: 5,
        })
    }

    fn region_info(&self, _device: RawFd, index: u32) -> io::Result<RegionInfo> {
        let s = self.state.lock();
        let rw = b::VFIO_REGION_INFO_FLAG_READ | b::VFIO_REGION_INFO_FLAG_WRITE;
        match index {
            b::VFIO_PCI_BAR0_REGION_INDEX => Ok(RegionInfo {
                flags: rw | b::VFIO_REGION_INFO_FLAG_MMAP,
                size: s.bar0_size,
                offset: FAKE_BAR0_OFFSET,
            }),
            b::VFIO_PCI_CONFIG_REGION_INDEX => Ok(RegionInfo {
                flags: rw,
                size: s.config.len() as u64,
                offset: FAKE_CONFIG_OFFSET,
            }),
            _ => Err(einval()),
        }
    }

    fn irq_info(&self, _device: RawFd, index: u32) -> io::Result<IrqInfo> {
        let s = self.state.lock();
        let count = match index {
            b::VFIO_PCI_MSIX_IRQ_INDEX => s.msix_count,
            b::VFIO_PCI_REQ_IRQ_INDEX => s.req_count,
            _ => 0,
        };
        Ok(IrqInfo { flags: 0, count })
    }

    fn set_irq_eventfds(&self, _device: RawFd, index: u32, eventfds: &[RawFd]) -> io::Result<()> {
        let mut s = self.state.lock();
        if s.irqs.contains_key(&index) && index == b::VFIO_PCI_MSIX_IRQ_INDEX {
            // Like vfio-pci: an enabled MSI-X range cannot be re-sized in place.
            return Err(einval());
        }
        s.irqs.insert(index, eventfds.to_vec());
        Ok(())
    }

    fn disable_irq(&self, _device: RawFd, index: u32) -> io::Result<()> {
        let mut s = self.state.lock();
        if index == b::VFIO_PCI_MSIX_IRQ_INDEX {
            s.irq_disables += 1;
        }
        s.irqs.remove(&index);
        Ok(())
    }

    fn reset(&self, _device: RawFd) -> io::Result<()> {
        Ok(())
    }

    fn pread(&self, _device: RawFd, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        if offset >= FAKE_CONFIG_OFFSET {
            let s = self.state.lock();
            let o = (offset - FAKE_CONFIG_OFFSET) as usize;
            let src = s.config.get(o..o + buf.len()).ok_or_else(einval)?;
            buf.copy_from_slice(src);
            return Ok(());
        }
        if buf.len() != 4 {
            return Err(einval());
        }
        buf.copy_from_slice(&self.bar_read32(offset - FAKE_BAR0_OFFSET).to_le_bytes());
        Ok(())
    }

    fn pwrite(&self, _device: RawFd, offset: u64, buf: &[u8]) -> io::Result<()> {
        if offset >= FAKE_CONFIG_OFFSET {
            let mut s = self.state.lock();
            let o = (offset - FAKE_CONFIG_OFFSET) as usize;
            let dst = s.config.get_mut(o..o + buf.len()).ok_or_else(einval)?;
            dst.copy_from_slice(buf);
            return Ok(());
        }
        let v: [u8; 4] = buf.try_into().map_err(|_| einval())?;
        self.bar_write32(offset - FAKE_BAR0_OFFSET, u32::from_le_bytes(v));
        Ok(())
    }

    fn mmap(&self, _device: RawFd, offset: u64, len: usize) -> io::Result<NonNull<u8>> {
        let mut s = self.state.lock();
        if s.fail == Some(Fail::Mmap) {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        if offset != FAKE_BAR0_OFFSET || len > BAR_BYTES {
            return Err(einval());
        }
        s.live_mmaps += 1;
        Ok(self.bar.cast())
    }

    unsafe fn munmap(&self, _ptr: NonNull<u8>, _len: usize) {
        self.state.lock().live_mmaps -= 1;
    }
}
