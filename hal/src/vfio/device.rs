//! One PCI function opened through VFIO, as the NVMe driver's [`DeviceBacking`].
//!
//! BAR0 is mmap'ed and accessed with volatile 32-bit loads and stores (a pread/pwrite
//! fallback covers kernels that refuse the mmap). Memory decoding and bus mastering are
//! switched on through the config region. MSI-X vectors and the request interrupt (the
//! kernel asking for the device back on hot-unplug) are routed to non-blocking eventfds.

use super::VfioError;
use super::container::VfioContainer;
use super::pci::{PciAddress, PciSysfs, VFIO_PCI_DRIVER};
use super::sys::{LinuxVfio, VfioSys};
use crate::backing::{BackingError, DeviceBacking};
use crate::blockdev::DeviceKind;
use crate::dma::DmaMapper;
use parking_lot::Mutex;
use std::fmt;
use std::os::fd::{AsRawFd, RawFd};
use std::ptr::NonNull;
use std::sync::Arc;
use vfio_bindings::bindings::vfio as b;
use vmm_sys_util::eventfd::EventFd;

/// PCI command register offset in config space.
const PCI_COMMAND: u64 = 0x04;
/// Command register: memory space enable.
const PCI_COMMAND_MEMORY: u16 = 1 << 1;
/// Command register: bus master enable.
const PCI_COMMAND_MASTER: u16 = 1 << 2;
/// Smallest BAR0 an NVMe controller can have: registers plus the admin doorbells.
const MIN_BAR0: u64 = 0x1008;

/// How BAR0 is reached.
enum Bar0 {
    /// mmap'ed: volatile loads and stores.
    Mapped { ptr: NonNull<u8>, len: usize },
    /// pread/pwrite on the device fd at the region's offset.
    Syscall { offset: u64, len: u64 },
}

impl Bar0 {
    fn len(&self) -> u64 {
        match self {
            Bar0::Mapped { len, .. } => *len as u64,
            Bar0::Syscall { len, .. } => *len,
        }
    }
}

/// A PCI function opened through VFIO.
pub struct VfioDevice {
    sys: Arc<dyn VfioSys>,
    address: PciAddress,
    group: u32,
    container: Arc<VfioContainer>,
    fd: RawFd,
    bar0: Bar0,
    config_offset: u64,
    msix_count: u32,
    msix: Mutex<Vec<Arc<EventFd>>>,
    request: Option<Arc<EventFd>>,
}

// SAFETY: the only non-Send/Sync field is the BAR0 pointer, which addresses device MMIO that
// is valid until Drop and is only touched with volatile 32-bit accesses; any thread may do
// those (the driver orders them with its own synchronisation).
unsafe impl Send for VfioDevice {}
// SAFETY: as above; shared access only performs volatile register reads and writes.
unsafe impl Sync for VfioDevice {}

impl fmt::Debug for VfioDevice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VfioDevice")
            .field("address", &self.address.as_str())
            .field("group", &self.group)
            .field("bar0_len", &self.bar0.len())
            .field("msix_count", &self.msix_count)
            .field("request_irq", &self.request.is_some())
            .finish()
    }
}

impl VfioDevice {
    /// Open the function at `address` (`DDDD:BB:DD.F`) with the real syscalls, `/sys` and
    /// `/dev/vfio`. It must already be bound to vfio-pci (see [`PciSysfs::bind_vfio`]).
    pub fn open(address: &str) -> Result<Self, VfioError> {
        Self::open_with(Arc::new(LinuxVfio), &PciSysfs::default(), address)
    }

    /// Open through an explicit syscall layer and sysfs view (tests use fakes of both).
    pub fn open_with(
        sys: Arc<dyn VfioSys>,
        sysfs: &PciSysfs,
        address: &str,
    ) -> Result<Self, VfioError> {
        let address = PciAddress::parse(address)?;
        let driver = sysfs.driver(&address)?;
        if driver.as_deref() != Some(VFIO_PCI_DRIVER) {
            return Err(VfioError::NotBoundToVfio {
                device: address.to_string(),
                driver: driver.unwrap_or_else(|| "no driver".into()),
            });
        }
        let group = sysfs.iommu_group(&address)?;
        let container = Arc::new(VfioContainer::open(
            sys.clone(),
            sysfs.dev_vfio(),
            address.as_str(),
        )?);
        let gfd = container.attach_group(sysfs.dev_vfio(), group)?;
        let fd = sys
            .group_device_fd(gfd, address.as_str())
            .map_err(|e| syscall(&address, "VFIO_GROUP_GET_DEVICE_FD", e))?;
        let (bar0, config_offset) = match Self::setup(&*sys, &address, fd) {
            Ok(v) => v,
            Err(e) => {
                sys.close(fd);
                return Err(e);
            }
        };
        let mut dev = VfioDevice {
            sys,
            address,
            group,
            container,
            fd,
            bar0,
            config_offset,
            msix_count: 0,
            msix: Mutex::new(Vec::new()),
            request: None,
        };
        dev.msix_count = match dev.sys.irq_info(fd, b::VFIO_PCI_MSIX_IRQ_INDEX) {
            Ok(info) => info.count,
            Err(e) => {
                tracing::warn!(device = %dev.address, error = %e, "no MSI-X information; polling only");
                0
            }
        };
        dev.request = dev.register_request_irq();
        tracing::info!(device = %dev.address, group, bar0_len = dev.bar0.len(),
            msix = dev.msix_count, request_irq = dev.request.is_some(), "VFIO device open");
        Ok(dev)
    }

    /// Check the device, enable memory decoding and bus mastering, and reach BAR0.
    fn setup(sys: &dyn VfioSys, address: &PciAddress, fd: RawFd) -> Result<(Bar0, u64), VfioError> {
        let info = sys
            .device_info(fd)
            .map_err(|e| syscall(address, "VFIO_DEVICE_GET_INFO", e))?;
        if info.flags & b::VFIO_DEVICE_FLAGS_PCI == 0 {
            return Err(VfioError::NotPci {
                device: address.to_string(),
            });
        }
        let config = sys
            .region_info(fd, b::VFIO_PCI_CONFIG_REGION_INDEX)
            .map_err(|e| syscall(address, "VFIO_DEVICE_GET_REGION_INFO(config)", e))?;
        let region = sys
            .region_info(fd, b::VFIO_PCI_BAR0_REGION_INDEX)
            .map_err(|e| syscall(address, "VFIO_DEVICE_GET_REGION_INFO(BAR0)", e))?;
        if region.size < MIN_BAR0 {
            return Err(VfioError::Bar0 {
                device: address.to_string(),
                reason: format!(
                    "{} bytes, an NVMe controller needs at least {MIN_BAR0}",
                    region.size
                ),
            });
        }
        // Memory space and bus master enable: without them BAR0 reads all-ones and every
        // DMA the controller attempts is dropped.
        let mut cmd = [0u8; 2];
        sys.pread(fd, config.offset + PCI_COMMAND, &mut cmd)
            .map_err(|e| syscall(address, "config read (command)", e))?;
        let cmd = u16::from_le_bytes(cmd);
        let want = cmd | PCI_COMMAND_MEMORY | PCI_COMMAND_MASTER;
        if want != cmd {
            sys.pwrite(fd, config.offset + PCI_COMMAND, &want.to_le_bytes())
                .map_err(|e| syscall(address, "config write (command)", e))?;
        }
        let bar0 = if region.mmappable()
            && let Ok(len) = usize::try_from(region.size)
        {
            match sys.mmap(fd, region.offset, len) {
                Ok(ptr) => Bar0::Mapped { ptr, len },
                Err(e) => {
                    tracing::warn!(device = %address, error = %e,
                        "BAR0 mmap refused; using pread/pwrite register access");
                    Bar0::Syscall {
                        offset: region.offset,
                        len: region.size,
                    }
                }
            }
        } else {
            Bar0::Syscall {
                offset: region.offset,
                len: region.size,
            }
        };
        Ok((bar0, config.offset))
    }

    fn register_request_irq(&self) -> Option<Arc<EventFd>> {
        let info = self.sys.irq_info(self.fd, b::VFIO_PCI_REQ_IRQ_INDEX).ok()?;
        if info.count == 0 {
            tracing::warn!(device = %self.address, "no VFIO request interrupt; hot-unplug will block until the device is closed");
            return None;
        }
        let efd = match EventFd::new(libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) {
            Ok(e) => e,
            Err(e) => {
                tracing::warn!(device = %self.address, error = %e, "cannot create request eventfd");
                return None;
            }
        };
        match self
            .sys
            .set_irq_eventfds(self.fd, b::VFIO_PCI_REQ_IRQ_INDEX, &[efd.as_raw_fd()])
        {
            Ok(()) => Some(Arc::new(efd)),
            Err(e) => {
                tracing::warn!(device = %self.address, error = %e, "cannot register the VFIO request interrupt");
                None
            }
        }
    }

    /// The PCI address.
    pub fn address(&self) -> &PciAddress {
        &self.address
    }

    /// The IOMMU group number.
    pub fn group(&self) -> u32 {
        self.group
    }

    /// Size of BAR0 in bytes.
    pub fn bar0_len(&self) -> u64 {
        self.bar0.len()
    }

    /// Whether BAR0 is mmap'ed (rather than reached through pread/pwrite).
    pub fn bar0_mapped(&self) -> bool {
        matches!(self.bar0, Bar0::Mapped { .. })
    }

    /// The container this device's DMA goes through.
    pub fn container(&self) -> &Arc<VfioContainer> {
        &self.container
    }

    /// Read PCI configuration space at `offset`.
    pub fn config_read(&self, offset: u64, buf: &mut [u8]) -> Result<(), VfioError> {
        self.sys
            .pread(self.fd, self.config_offset + offset, buf)
            .map_err(|e| syscall(&self.address, "config read", e))
    }

    /// Write PCI configuration space at `offset` (vfio-pci virtualises what it must).
    pub fn config_write(&self, offset: u64, buf: &[u8]) -> Result<(), VfioError> {
        self.sys
            .pwrite(self.fd, self.config_offset + offset, buf)
            .map_err(|e| syscall(&self.address, "config write", e))
    }

    /// Function-level reset through `VFIO_DEVICE_RESET`.
    pub fn reset(&self) -> Result<(), VfioError> {
        self.sys
            .reset(self.fd)
            .map_err(|e| syscall(&self.address, "VFIO_DEVICE_RESET", e))
    }

    /// Whether `offset` is a valid aligned 32-bit register; logs the driver bug if not.
    fn reg_ok(&self, offset: u64, op: &str) -> bool {
        let ok = offset.is_multiple_of(4)
            && offset
                .checked_add(4)
                .is_some_and(|end| end <= self.bar0.len());
        if !ok {
            tracing::error!(device = %self.address, offset, op, bar0_len = self.bar0.len(),
                "register access outside BAR0 or unaligned; ignored");
        }
        ok
    }
}

fn syscall(address: &PciAddress, op: &'static str, source: std::io::Error) -> VfioError {
    VfioError::Syscall {
        device: address.to_string(),
        op,
        source,
    }
}

impl DeviceBacking for VfioDevice {
    fn id(&self) -> &str {
        self.address.as_str()
    }

    fn kind(&self) -> DeviceKind {
        DeviceKind::NvmeVfio
    }

    fn read32(&self, offset: u64) -> u32 {
        if !self.reg_ok(offset, "read") {
            return u32::MAX;
        }
        match &self.bar0 {
            Bar0::Mapped { ptr, .. } => {
                // SAFETY: `offset + 4 <= len` and 4-aligned (checked above) in a mapping that
                // lives until Drop; volatile because it is device MMIO. After surprise removal
                // the read returns all-ones, which is passed through to the driver.
                unsafe { std::ptr::read_volatile(ptr.as_ptr().add(offset as usize).cast::<u32>()) }
            }
            Bar0::Syscall { offset: base, .. } => {
                let mut v = [0u8; 4];
                match self.sys.pread(self.fd, base + offset, &mut v) {
                    Ok(()) => u32::from_le_bytes(v),
                    Err(_) => u32::MAX,
                }
            }
        }
    }

    fn write32(&self, offset: u64, value: u32) {
        if !self.reg_ok(offset, "write") {
            return;
        }
        match &self.bar0 {
            Bar0::Mapped { ptr, .. } => {
                // SAFETY: in bounds and aligned (checked above) in a live MMIO mapping; volatile
                // so the store is neither elided nor merged.
                unsafe {
                    std::ptr::write_volatile(ptr.as_ptr().add(offset as usize).cast::<u32>(), value)
                }
            }
            Bar0::Syscall { offset: base, .. } => {
                if let Err(e) = self
                    .sys
                    .pwrite(self.fd, base + offset, &value.to_le_bytes())
                {
                    tracing::warn!(device = %self.address, offset, error = %e, "register write failed");
                }
            }
        }
    }

    fn dma_mapper(&self) -> Arc<dyn DmaMapper> {
        self.container.clone()
    }

    fn msix_count(&self) -> u32 {
        self.msix_count
    }

    fn enable_msix(&self, count: u32) -> Result<Vec<Arc<EventFd>>, BackingError> {
        let err = |reason: String| BackingError::Interrupts {
            device: self.address.to_string(),
            count,
            reason,
        };
        if count > self.msix_count {
            return Err(err(format!(
                "device offers only {} MSI-X vectors",
                self.msix_count
            )));
        }
        let mut live = self.msix.lock();
        // vfio-pci cannot grow an enabled MSI-X range in place: disable, then enable anew.
        if !live.is_empty() {
            self.sys
                .disable_irq(self.fd, b::VFIO_PCI_MSIX_IRQ_INDEX)
                .map_err(|e| err(format!("disable before re-enable: {e}")))?;
            live.clear();
        }
        if count == 0 {
            return Ok(Vec::new());
        }
        let fds = (0..count)
            .map(|_| EventFd::new(libc::EFD_NONBLOCK | libc::EFD_CLOEXEC).map(Arc::new))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| err(format!("eventfd: {e}")))?;
        let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
        self.sys
            .set_irq_eventfds(self.fd, b::VFIO_PCI_MSIX_IRQ_INDEX, &raw)
            .map_err(|e| err(format!("VFIO_DEVICE_SET_IRQS: {e}")))?;
        *live = fds.clone();
        Ok(fds)
    }

    fn removal_request(&self) -> Option<Arc<EventFd>> {
        self.request.clone()
    }
}

impl Drop for VfioDevice {
    fn drop(&mut self) {
        if !self.msix.get_mut().is_empty()
            && let Err(e) = self.sys.disable_irq(self.fd, b::VFIO_PCI_MSIX_IRQ_INDEX)
        {
            tracing::warn!(device = %self.address, error = %e, "disabling MSI-X failed");
        }
        if self.request.is_some()
            && let Err(e) = self.sys.disable_irq(self.fd, b::VFIO_PCI_REQ_IRQ_INDEX)
        {
            tracing::warn!(device = %self.address, error = %e, "unregistering the request interrupt failed");
        }
        if let Bar0::Mapped { ptr, len } = self.bar0 {
            // SAFETY: the mapping came from one `mmap` in `setup`, and `&mut self` in Drop
            // means no register access can happen any more.
            unsafe { self.sys.munmap(ptr, len) };
        }
        // Closing the device fd is what lets the kernel release the device (hot-unplug waits
        // for it). The container, and with it the IOMMU domain, lives on while DMA buffers do.
        self.sys.close(self.fd);
        tracing::info!(device = %self.address, "VFIO device closed");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dma::DmaBuffer;
    use crate::nvme::spec::reg;
    use crate::vfio::fake::{FAKE_CONFIG_OFFSET, Fail, FakeVfio};
    use crate::vfio::pci::NVME_CLASS;
    use crate::vfio::pci::tests::FakeTree;

    const BDF: &str = "0000:00:04.0";

    fn tree() -> FakeTree {
        let t = FakeTree::new();
        t.add(BDF, NVME_CLASS, Some("vfio-pci"), Some(3));
        t.add_group_node(3);
        t
    }

    fn open(fake: &Arc<FakeVfio>, t: &FakeTree) -> Result<VfioDevice, VfioError> {
        VfioDevice::open_with(fake.clone(), &t.sysfs(), BDF)
    }

    #[test]
    fn open_enables_memory_and_bus_master_and_maps_bar0() {
        let (fake, t) = (FakeVfio::new(), tree());
        fake.bar_write32(reg::CAP, 0x0f01_07ff);
        fake.bar_write32(reg::CAP + 4, 0x0040_1820);
        fake.bar_write32(reg::VS, 0x0001_0400);
        let d = open(&fake, &t).unwrap();
        assert!(d.bar0_mapped());
        assert_eq!(d.bar0_len(), 0x4000);
        assert_eq!(d.read64(reg::CAP), 0x0040_1820_0f01_07ff);
        assert_eq!(d.read32(reg::VS), 0x0001_0400);
        d.write32(reg::CC, 0x0046_0001);
        assert_eq!(fake.bar_read32(reg::CC), 0x0046_0001);
        let s = fake.state.lock();
        let cmd = u16::from_le_bytes([s.config[4], s.config[5]]);
        assert_eq!(cmd & 0x6, 0x6, "memory + bus master enabled");
        assert_eq!(cmd & 0x400, 0x400, "other command bits preserved");
        assert_eq!(d.id(), BDF);
        assert_eq!(d.kind(), DeviceKind::NvmeVfio);
    }

    #[test]
    fn bad_register_offsets_read_all_ones_and_do_not_write() {
        let (fake, t) = (FakeVfio::new(), tree());
        let d = open(&fake, &t).unwrap();
        assert_eq!(d.read32(0x4000), u32::MAX);
        assert_eq!(d.read32(2), u32::MAX);
        assert_eq!(d.read32(u64::MAX - 1), u32::MAX);
        d.write32(0x4000, 5);
        d.write32(0x3ffe, 5);
        // A removed device reads all-ones from MMIO; that is passed through unchanged.
        fake.bar_write32(reg::CSTS, u32::MAX);
        assert_eq!(d.read32(reg::CSTS), u32::MAX);
    }

    #[test]
    fn syscall_fallback_when_bar0_cannot_be_mapped() {
        let (fake, t) = (FakeVfio::new(), tree());
        fake.state.lock().fail = Some(Fail::Mmap);
        fake.bar_write32(reg::VS, 0x0001_0400);
        let d = open(&fake, &t).unwrap();
        assert!(!d.bar0_mapped());
        assert_eq!(d.read32(reg::VS), 0x0001_0400);
        d.write32(reg::CC, 1);
        assert_eq!(fake.bar_read32(reg::CC), 1);
    }

    #[test]
    fn not_bound_to_vfio_pci_is_refused_before_touching_vfio() {
        let fake = FakeVfio::new();
        let t = FakeTree::new();
        t.add(BDF, NVME_CLASS, Some("nvme"), Some(3));
        let e = open(&fake, &t).unwrap_err();
        assert!(
            matches!(&e, VfioError::NotBoundToVfio { driver, .. } if driver == "nvme"),
            "{e}"
        );
        assert!(fake.state.lock().opened_paths.is_empty());
        let e = VfioDevice::open_with(fake.clone(), &t.sysfs(), "0000:00:04.0/..").unwrap_err();
        assert!(matches!(e, VfioError::Pci(_)), "{e}");
    }

    #[test]
    fn failures_after_getting_the_device_fd_close_everything() {
        let (fake, t) = (FakeVfio::new(), tree());
        fake.state.lock().bar0_size = 0x800;
        let e = open(&fake, &t).unwrap_err();
        assert!(matches!(e, VfioError::Bar0 { .. }), "{e}");
        assert!(fake.state.lock().open_fds.is_empty());
        let (fake, t) = (FakeVfio::new(), tree());
        fake.state.lock().fail = Some(Fail::GetDeviceFd(libc::ENODEV));
        let e = open(&fake, &t).unwrap_err();
        assert!(
            matches!(
                e,
                VfioError::Syscall {
                    op: "VFIO_GROUP_GET_DEVICE_FD",
                    ..
                }
            ),
            "{e}"
        );
        assert!(fake.state.lock().open_fds.is_empty());
    }

    #[test]
    fn msix_vectors_route_to_nonblocking_eventfds() {
        let (fake, t) = (FakeVfio::new(), tree());
        let d = open(&fake, &t).unwrap();
        assert_eq!(d.msix_count(), 8);
        let e = d.enable_msix(9).unwrap_err();
        assert!(e.to_string().contains("only 8"), "{e}");
        let fds = d.enable_msix(2).unwrap();
        assert_eq!(fds.len(), 2);
        {
            let s = fake.state.lock();
            let routed = &s.irqs[&b::VFIO_PCI_MSIX_IRQ_INDEX];
            assert_eq!(
                routed,
                &fds.iter().map(|f| f.as_raw_fd()).collect::<Vec<_>>()
            );
        }
        // Non-blocking: nothing signalled yet reads WouldBlock instead of hanging.
        let err = fds[0].read().unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);
        // Re-enabling with more vectors disables first, then routes all of them.
        let fds = d.enable_msix(4).unwrap();
        {
            let s = fake.state.lock();
            assert_eq!(s.irq_disables, 1);
            assert_eq!(s.irqs[&b::VFIO_PCI_MSIX_IRQ_INDEX].len(), 4);
        }
        drop(fds);
        drop(d);
        let s = fake.state.lock();
        assert!(!s.irqs.contains_key(&b::VFIO_PCI_MSIX_IRQ_INDEX));
        assert!(!s.irqs.contains_key(&b::VFIO_PCI_REQ_IRQ_INDEX));
        assert!(s.open_fds.is_empty(), "left open: {:?}", s.open_fds);
        assert_eq!(s.live_mmaps, 0);
    }

    #[test]
    fn request_interrupt_is_registered_and_signals() {
        let (fake, t) = (FakeVfio::new(), tree());
        let d = open(&fake, &t).unwrap();
        let req = d.removal_request().expect("request irq registered");
        let routed = fake.state.lock().irqs[&b::VFIO_PCI_REQ_IRQ_INDEX].clone();
        assert_eq!(routed, vec![req.as_raw_fd()]);
        // The kernel signals the eventfd on hot-unplug; the driver sees it.
        fake.signal(routed[0]);
        assert_eq!(req.read().unwrap(), 1);
        // Without the interrupt index, there is no channel.
        let (fake, t) = (FakeVfio::new(), tree());
        fake.state.lock().req_count = 0;
        assert!(open(&fake, &t).unwrap().removal_request().is_none());
    }

    #[test]
    fn dma_through_the_device_mapper_and_config_access() {
        let (fake, t) = (FakeVfio::new(), tree());
        let d = open(&fake, &t).unwrap();
        let buf = DmaBuffer::alloc(d.dma_mapper(), 8192).unwrap();
        assert!(fake.state.lock().mappings.contains_key(&buf.iova()));
        // The buffer keeps the container alive after the device is closed.
        drop(d);
        assert_eq!(fake.state.lock().attached_groups.len(), 1);
        drop(buf);
        let s = fake.state.lock();
        assert!(s.attached_groups.is_empty() && s.open_fds.is_empty());
        drop(s);
        let d = open(&fake, &t).unwrap();
        let mut id = [0u8; 4];
        d.config_read(0, &mut id).unwrap();
        assert_eq!(
            u32::from_le_bytes(id),
            0x0010_1b36,
            "QEMU NVMe vendor/device"
        );
        d.config_write(0x0c, &[0x10]).unwrap();
        assert_eq!(fake.state.lock().config[0x0c], 0x10);
        assert_eq!(FAKE_CONFIG_OFFSET, 7 << 40);
    }
}
