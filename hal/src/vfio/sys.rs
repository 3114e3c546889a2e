//! The syscall seam under the VFIO backend: every ioctl, mmap and pread the backend makes.
//!
//! [`VfioSys`] is a trait so the container/group/device/DMA logic above it runs in unit
//! tests against a fake (see `fake.rs`), the way rust-vmm's `vfio-ioctls` swaps its
//! `vfio_syscall` module under `cfg(test)`. [`LinuxVfio`] is the real implementation:
//! raw ioctls on the legacy container/group interface (`/dev/vfio/vfio`, `/dev/vfio/N`)
//! with the structures from `vfio-bindings`.

use std::ffi::CString;
use std::fmt;
use std::io;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::ptr::NonNull;
use vfio_bindings::bindings::vfio as b;

/// A region of a VFIO device (`VFIO_DEVICE_GET_REGION_INFO`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RegionInfo {
    /// `VFIO_REGION_INFO_FLAG_*`.
    pub flags: u32,
    /// Size in bytes.
    pub size: u64,
    /// Offset of the region in the device fd (for pread/pwrite/mmap).
    pub offset: u64,
}

impl RegionInfo {
    /// Whether the region may be mmap'ed.
    pub fn mmappable(&self) -> bool {
        self.flags & b::VFIO_REGION_INFO_FLAG_MMAP != 0
    }
}

/// A device as a whole (`VFIO_DEVICE_GET_INFO`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DeviceInfo {
    /// `VFIO_DEVICE_FLAGS_*`.
    pub flags: u32,
    /// Number of regions.
    pub num_regions: u32,
    /// Number of interrupt indexes.
    pub num_irqs: u32,
}

/// An interrupt index of a device (`VFIO_DEVICE_GET_IRQ_INFO`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct IrqInfo {
    /// `VFIO_IRQ_INFO_*`.
    pub flags: u32,
    /// Vectors available at this index.
    pub count: u32,
}

/// What the type1 IOMMU reports (`VFIO_IOMMU_GET_INFO`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IommuInfo {
    /// Supported IOMMU page sizes (bitmap), 0 if not reported.
    pub page_sizes: u64,
    /// Usable IOVA ranges, inclusive `(start, end)`; empty if the kernel did not report them.
    pub iova_ranges: Vec<(u64, u64)>,
}

/// The VFIO syscalls, behind a trait so everything above them runs without `/dev/vfio`.
///
/// File descriptors are plain `RawFd`s owned by the caller, which closes them with
/// [`VfioSys::close`].
pub trait VfioSys: Send + Sync + fmt::Debug {
    /// Open a VFIO character device (`/dev/vfio/vfio` or `/dev/vfio/N`) read-write.
    fn open(&self, path: &Path) -> io::Result<RawFd>;
    /// Close a descriptor returned by this trait.
    fn close(&self, fd: RawFd);
    /// `VFIO_GET_API_VERSION` on a container.
    fn api_version(&self, container: RawFd) -> io::Result<i32>;
    /// `VFIO_CHECK_EXTENSION` on a container.
    fn check_extension(&self, container: RawFd, extension: u32) -> io::Result<bool>;
    /// `VFIO_SET_IOMMU` on a container.
    fn set_iommu(&self, container: RawFd, iommu_type: u32) -> io::Result<()>;
    /// `VFIO_IOMMU_GET_INFO` on a container, with the IOVA-range capability parsed.
    fn iommu_info(&self, container: RawFd) -> io::Result<IommuInfo>;
    /// `VFIO_IOMMU_MAP_DMA` (read and write) of `size` bytes at host `vaddr` to `iova`.
    ///
    /// # Safety
    /// `vaddr..vaddr+size` must be valid memory that stays allocated until it is unmapped
    /// with [`VfioSys::unmap_dma`] (or the container is closed).
    unsafe fn map_dma(&self, container: RawFd, vaddr: u64, iova: u64, size: u64) -> io::Result<()>;
    /// `VFIO_IOMMU_UNMAP_DMA`; returns the number of bytes the kernel unmapped.
    fn unmap_dma(&self, container: RawFd, iova: u64, size: u64) -> io::Result<u64>;
    /// `VFIO_GROUP_GET_STATUS`: the `VFIO_GROUP_FLAGS_*`.
    fn group_status(&self, group: RawFd) -> io::Result<u32>;
    /// `VFIO_GROUP_SET_CONTAINER`.
    fn group_set_container(&self, group: RawFd, container: RawFd) -> io::Result<()>;
    /// `VFIO_GROUP_UNSET_CONTAINER`.
    fn group_unset_container(&self, group: RawFd) -> io::Result<()>;
    /// `VFIO_GROUP_GET_DEVICE_FD` for the device named `name` (the PCI address).
    fn group_device_fd(&self, group: RawFd, name: &str) -> io::Result<RawFd>;
    /// `VFIO_DEVICE_GET_INFO`.
    fn device_info(&self, device: RawFd) -> io::Result<DeviceInfo>;
    /// `VFIO_DEVICE_GET_REGION_INFO` for region `index`.
    fn region_info(&self, device: RawFd, index: u32) -> io::Result<RegionInfo>;
    /// `VFIO_DEVICE_GET_IRQ_INFO` for interrupt `index`.
    fn irq_info(&self, device: RawFd, index: u32) -> io::Result<IrqInfo>;
    /// `VFIO_DEVICE_SET_IRQS` with `DATA_EVENTFD | ACTION_TRIGGER`: route vectors
    /// `0..eventfds.len()` of interrupt `index` to the eventfds.
    fn set_irq_eventfds(&self, device: RawFd, index: u32, eventfds: &[RawFd]) -> io::Result<()>;
    /// `VFIO_DEVICE_SET_IRQS` with `DATA_NONE | ACTION_TRIGGER` and count 0: disable `index`.
    fn disable_irq(&self, device: RawFd, index: u32) -> io::Result<()>;
    /// `VFIO_DEVICE_RESET`.
    fn reset(&self, device: RawFd) -> io::Result<()>;
    /// Read `buf.len()` bytes at `offset` of the device fd (region offset included).
    fn pread(&self, device: RawFd, offset: u64, buf: &mut [u8]) -> io::Result<()>;
    /// Write `buf` at `offset` of the device fd (region offset included).
    fn pwrite(&self, device: RawFd, offset: u64, buf: &[u8]) -> io::Result<()>;
    /// Map `len` bytes of the device fd at `offset` shared, read-write. The memory stays
    /// valid until [`VfioSys::munmap`].
    fn mmap(&self, device: RawFd, offset: u64, len: usize) -> io::Result<NonNull<u8>>;
    /// Undo [`VfioSys::mmap`].
    ///
    /// # Safety
    /// `ptr`/`len` must come from one `mmap` call, and nothing may use the memory afterwards.
    unsafe fn munmap(&self, ptr: NonNull<u8>, len: usize);
}

const VFIO_TYPE: u64 = b';' as u64;
const VFIO_BASE: u64 = 100;

/// `_IO(VFIO_TYPE, VFIO_BASE + nr)`: VFIO ioctls carry no size or direction bits.
const fn vfio_io(nr: u64) -> u64 {
    (VFIO_TYPE << 8) | (VFIO_BASE + nr)
}

const VFIO_GET_API_VERSION: u64 = vfio_io(0);
const VFIO_CHECK_EXTENSION: u64 = vfio_io(1);
const VFIO_SET_IOMMU: u64 = vfio_io(2);
const VFIO_GROUP_GET_STATUS: u64 = vfio_io(3);
const VFIO_GROUP_SET_CONTAINER: u64 = vfio_io(4);
const VFIO_GROUP_UNSET_CONTAINER: u64 = vfio_io(5);
const VFIO_GROUP_GET_DEVICE_FD: u64 = vfio_io(6);
const VFIO_DEVICE_GET_INFO: u64 = vfio_io(7);
const VFIO_DEVICE_GET_REGION_INFO: u64 = vfio_io(8);
const VFIO_DEVICE_GET_IRQ_INFO: u64 = vfio_io(9);
const VFIO_DEVICE_SET_IRQS: u64 = vfio_io(10);
const VFIO_DEVICE_RESET: u64 = vfio_io(11);
const VFIO_IOMMU_GET_INFO: u64 = vfio_io(12);
const VFIO_IOMMU_MAP_DMA: u64 = vfio_io(13);
const VFIO_IOMMU_UNMAP_DMA: u64 = vfio_io(14);

/// Size of `struct vfio_irq_set` without its flexible `data` array.
const IRQ_SET_HEADER: usize = std::mem::size_of::<b::vfio_irq_set>();
const _: () = assert!(IRQ_SET_HEADER == 20);

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// Parse the capability chain of a `VFIO_IOMMU_GET_INFO` reply (`buf` is the whole reply,
/// `first` the `cap_offset`) and return the IOVA ranges of the IOVA-range capability.
///
/// The bytes come from the kernel but are treated as untrusted: offsets out of range, loops
/// and short capabilities end the walk instead of panicking.
pub fn parse_iova_ranges(buf: &[u8], first: u32) -> Vec<(u64, u64)> {
    let u16_at =
        |o: usize| -> Option<u16> { Some(u16::from_le_bytes(buf.get(o..o + 2)?.try_into().ok()?)) };
    let u32_at =
        |o: usize| -> Option<u32> { Some(u32::from_le_bytes(buf.get(o..o + 4)?.try_into().ok()?)) };
    let u64_at =
        |o: usize| -> Option<u64> { Some(u64::from_le_bytes(buf.get(o..o + 8)?.try_into().ok()?)) };
    let mut ranges = Vec::new();
    let mut off = first as usize;
    let mut hops = 0;
    // A capability header is 8 bytes; offset 0 ends the chain. Bound the walk to defeat loops.
    while off != 0 && hops < 64 {
        hops += 1;
        let (Some(id), Some(next)) = (u16_at(off), u32_at(off + 4)) else {
            break;
        };
        if u32::from(id) == b::VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE {
            let nr = u32_at(off + 8).unwrap_or(0) as usize;
            for i in 0..nr.min(1024) {
                let at = off + 16 + 16 * i;
                match (u64_at(at), u64_at(at + 8)) {
                    (Some(s), Some(e)) if s <= e => ranges.push((s, e)),
                    (Some(_), Some(_)) => {}
                    _ => break,
                }
            }
        }
        off = next as usize;
    }
    ranges
}

/// The real VFIO syscalls on Linux.
#[derive(Debug, Default, Clone, Copy)]
pub struct LinuxVfio;

impl LinuxVfio {
    fn set_irqs(&self, device: RawFd, flags: u32, index: u32, fds: &[RawFd]) -> io::Result<()> {
        // struct vfio_irq_set { argsz, flags, index, start, count, data[] } as u32 words,
        // followed by one i32 eventfd per vector.
        let argsz = IRQ_SET_HEADER + 4 * fds.len();
        let mut words: Vec<u32> = vec![argsz as u32, flags, index, 0, fds.len() as u32];
        words.extend(fds.iter().map(|&fd| fd as u32));
        // SAFETY: `words` is a properly laid out, 4-byte aligned vfio_irq_set of `argsz`
        // bytes that outlives the call; the kernel only reads it.
        let r = unsafe {
            libc::ioctl(
                device,
                VFIO_DEVICE_SET_IRQS as _,
                words.as_ptr() as *const libc::c_void,
            )
        };
        check(r).map(|_| ())
    }
}

impl VfioSys for LinuxVfio {
    fn open(&self, path: &Path) -> io::Result<RawFd> {
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: `c` is a valid NUL-terminated path; open has no other memory effects.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        check(fd)
    }

    fn close(&self, fd: RawFd) {
        // SAFETY: the caller owns `fd` (it came from this trait) and does not use it again.
        unsafe { libc::close(fd) };
    }

    fn api_version(&self, container: RawFd) -> io::Result<i32> {
        // SAFETY: VFIO_GET_API_VERSION takes no argument and touches no user memory.
        check(unsafe { libc::ioctl(container, VFIO_GET_API_VERSION as _) })
    }

    fn check_extension(&self, container: RawFd, extension: u32) -> io::Result<bool> {
        // SAFETY: VFIO_CHECK_EXTENSION takes the extension id by value; no user memory.
        let r = check(unsafe {
            libc::ioctl(
                container,
                VFIO_CHECK_EXTENSION as _,
                libc::c_ulong::from(extension),
            )
        })?;
        Ok(r > 0)
    }

    fn set_iommu(&self, container: RawFd, iommu_type: u32) -> io::Result<()> {
        // SAFETY: VFIO_SET_IOMMU takes the IOMMU type by value; no user memory.
        check(unsafe {
            libc::ioctl(
                container,
                VFIO_SET_IOMMU as _,
                libc::c_ulong::from(iommu_type),
            )
        })
        .map(|_| ())
    }

    fn iommu_info(&self, container: RawFd) -> io::Result<IommuInfo> {
        let base = std::mem::size_of::<b::vfio_iommu_type1_info>();
        let mut argsz = base;
        for _ in 0..2 {
            // u64 words keep the buffer 8-byte aligned, as the struct requires.
            let mut words = vec![0u64; argsz.div_ceil(8)];
            // argsz is the first u32 of the struct (little-endian low half of word 0).
            words[0] = argsz as u64;
            // SAFETY: `words` is a zeroed, aligned buffer of at least `argsz` bytes, which is
            // what the kernel may write; it outlives the call.
            check(unsafe {
                libc::ioctl(
                    container,
                    VFIO_IOMMU_GET_INFO as _,
                    words.as_mut_ptr() as *mut libc::c_void,
                )
            })?;
            let bytes: Vec<u8> = words.iter().flat_map(|w| w.to_le_bytes()).collect();
            let want = u32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
            let flags = u32::from_le_bytes([bytes[4], bytes[5], bytes[6], bytes[7]]);
            if want > argsz && argsz == base {
                argsz = want.min(1 << 16);
                continue;
            }
            let page_sizes = if flags & b::VFIO_IOMMU_INFO_PGSIZES != 0 {
                words[1]
            } else {
                0
            };
            let iova_ranges = if flags & b::VFIO_IOMMU_INFO_CAPS != 0 {
                let cap_offset = (words[2] & 0xffff_ffff) as u32;
                parse_iova_ranges(&bytes, cap_offset)
            } else {
                Vec::new()
            };
            return Ok(IommuInfo {
                page_sizes,
                iova_ranges,
            });
        }
        Err(io::Error::other("VFIO_IOMMU_GET_INFO size kept growing"))
    }

    unsafe fn map_dma(&self, container: RawFd, vaddr: u64, iova: u64, size: u64) -> io::Result<()> {
        let map = b::vfio_iommu_type1_dma_map {
            argsz: std::mem::size_of::<b::vfio_iommu_type1_dma_map>() as u32,
            flags: b::VFIO_DMA_MAP_FLAG_READ | b::VFIO_DMA_MAP_FLAG_WRITE,
            vaddr,
            iova,
            size,
        };
        // SAFETY: `map` is a valid vfio_iommu_type1_dma_map the kernel only reads; the caller
        // promised the host range stays valid until it is unmapped, so the pinned pages are ours.
        check(unsafe { libc::ioctl(container, VFIO_IOMMU_MAP_DMA as _, &map) }).map(|_| ())
    }

    fn unmap_dma(&self, container: RawFd, iova: u64, size: u64) -> io::Result<u64> {
        let mut unmap = b::vfio_iommu_type1_dma_unmap {
            argsz: std::mem::size_of::<b::vfio_iommu_type1_dma_unmap>() as u32,
            flags: 0,
            iova,
            size,
            data: Default::default(),
        };
        // SAFETY: `unmap` is a valid vfio_iommu_type1_dma_unmap without a dirty bitmap; the
        // kernel writes back `size` (bytes unmapped) into it and nothing else.
        check(unsafe { libc::ioctl(container, VFIO_IOMMU_UNMAP_DMA as _, &mut unmap) })?;
        Ok(unmap.size)
    }

    fn group_status(&self, group: RawFd) -> io::Result<u32> {
        let mut status = b::vfio_group_status {
            argsz: std::mem::size_of::<b::vfio_group_status>() as u32,
            flags: 0,
        };
        // SAFETY: the kernel fills the vfio_group_status we own; no other memory is touched.
        check(unsafe { libc::ioctl(group, VFIO_GROUP_GET_STATUS as _, &mut status) })?;
        Ok(status.flags)
    }

    fn group_set_container(&self, group: RawFd, container: RawFd) -> io::Result<()> {
        let fd: libc::c_int = container;
        // SAFETY: the argument is a pointer to an int holding the container fd, read only.
        check(unsafe { libc::ioctl(group, VFIO_GROUP_SET_CONTAINER as _, &fd) }).map(|_| ())
    }

    fn group_unset_container(&self, group: RawFd) -> io::Result<()> {
        // SAFETY: VFIO_GROUP_UNSET_CONTAINER takes no argument.
        check(unsafe { libc::ioctl(group, VFIO_GROUP_UNSET_CONTAINER as _) }).map(|_| ())
    }

    fn group_device_fd(&self, group: RawFd, name: &str) -> io::Result<RawFd> {
        let c = CString::new(name).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: the argument is a NUL-terminated device name the kernel only reads; the
        // returned fd is owned by the caller.
        check(unsafe { libc::ioctl(group, VFIO_GROUP_GET_DEVICE_FD as _, c.as_ptr()) })
    }

    fn device_info(&self, device: RawFd) -> io::Result<DeviceInfo> {
        let mut info = b::vfio_device_info {
            argsz: std::mem::size_of::<b::vfio_device_info>() as u32,
            ..Default::default()
        };
        // SAFETY: the kernel fills at most `argsz` bytes of the vfio_device_info we own.
        check(unsafe { libc::ioctl(device, VFIO_DEVICE_GET_INFO as _, &mut info) })?;
        Ok(DeviceInfo {
            flags: info.flags,
            num_regions: info.num_regions,
            num_irqs: info.num_irqs,
        })
    }

    fn region_info(&self, device: RawFd, index: u32) -> io::Result<RegionInfo> {
        let mut info = b::vfio_region_info {
            argsz: std::mem::size_of::<b::vfio_region_info>() as u32,
            index,
            ..Default::default()
        };
        // SAFETY: the kernel fills at most `argsz` bytes of the vfio_region_info we own (it
        // only reports, not writes, a larger argsz when capabilities do not fit).
        check(unsafe { libc::ioctl(device, VFIO_DEVICE_GET_REGION_INFO as _, &mut info) })?;
        Ok(RegionInfo {
            flags: info.flags,
            size: info.size,
            offset: info.offset,
        })
    }

    fn irq_info(&self, device: RawFd, index: u32) -> io::Result<IrqInfo> {
        let mut info = b::vfio_irq_info {
            argsz: std::mem::size_of::<b::vfio_irq_info>() as u32,
            index,
            ..Default::default()
        };
        // SAFETY: the kernel fills the vfio_irq_info we own.
        check(unsafe { libc::ioctl(device, VFIO_DEVICE_GET_IRQ_INFO as _, &mut info) })?;
        Ok(IrqInfo {
            flags: info.flags,
            count: info.count,
        })
    }

    fn set_irq_eventfds(&self, device: RawFd, index: u32, eventfds: &[RawFd]) -> io::Result<()> {
        self.set_irqs(
            device,
            b::VFIO_IRQ_SET_DATA_EVENTFD | b::VFIO_IRQ_SET_ACTION_TRIGGER,
            index,
            eventfds,
        )
    }

    fn disable_irq(&self, device: RawFd, index: u32) -> io::Result<()> {
        self.set_irqs(
            device,
            b::VFIO_IRQ_SET_DATA_NONE | b::VFIO_IRQ_SET_ACTION_TRIGGER,
            index,
            &[],
        )
    }

    fn reset(&self, device: RawFd) -> io::Result<()> {
        // SAFETY: VFIO_DEVICE_RESET takes no argument.
        check(unsafe { libc::ioctl(device, VFIO_DEVICE_RESET as _) }).map(|_| ())
    }

    fn pread(&self, device: RawFd, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        let off = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: `buf` is valid for `buf.len()` bytes of writes for the duration of the call.
        let n = unsafe { libc::pread(device, buf.as_mut_ptr().cast(), buf.len(), off) };
        match usize::try_from(n) {
            Ok(n) if n == buf.len() => Ok(()),
            Ok(n) => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("short read: {n} of {} bytes", buf.len()),
            )),
            Err(_) => Err(io::Error::last_os_error()),
        }
    }

    fn pwrite(&self, device: RawFd, offset: u64, buf: &[u8]) -> io::Result<()> {
        let off = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: `buf` is valid for `buf.len()` bytes of reads for the duration of the call.
        let n = unsafe { libc::pwrite(device, buf.as_ptr().cast(), buf.len(), off) };
        match usize::try_from(n) {
            Ok(n) if n == buf.len() => Ok(()),
            Ok(n) => Err(io::Error::new(
                io::ErrorKind::WriteZero,
                format!("short write: {n} of {} bytes", buf.len()),
            )),
            Err(_) => Err(io::Error::last_os_error()),
        }
    }

    fn mmap(&self, device: RawFd, offset: u64, len: usize) -> io::Result<NonNull<u8>> {
        let off = libc::off_t::try_from(offset)
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // SAFETY: a fresh shared mapping with no address hint; the kernel validates fd, offset
        // and length and returns MAP_FAILED on error, handled below.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                device,
                off,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))
    }

    unsafe fn munmap(&self, ptr: NonNull<u8>, len: usize) {
        // SAFETY: the caller promises `ptr`/`len` come from one `mmap` and are no longer used.
        unsafe { libc::munmap(ptr.as_ptr().cast(), len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cap_chain(ranges: &[(u64, u64)], lead_cap: bool) -> (Vec<u8>, u32) {
        // A 24-byte info struct, then optionally a foreign cap, then the IOVA-range cap.
        let mut buf = vec![0u8; 24];
        let mut first = 24u32;
        if lead_cap {
            let next = 24 + 16;
            buf.extend_from_slice(&2u16.to_le_bytes()); // migration cap id
            buf.extend_from_slice(&1u16.to_le_bytes());
            buf.extend_from_slice(&(next as u32).to_le_bytes());
            buf.extend_from_slice(&[0u8; 8]);
            first = 24;
        }
        buf.extend_from_slice(&(b::VFIO_IOMMU_TYPE1_INFO_CAP_IOVA_RANGE as u16).to_le_bytes());
        buf.extend_from_slice(&1u16.to_le_bytes());
        buf.extend_from_slice(&0u32.to_le_bytes());
        buf.extend_from_slice(&(ranges.len() as u32).to_le_bytes());
        buf.extend_from_slice(&0u32.to_le_bytes());
        for (s, e) in ranges {
            buf.extend_from_slice(&s.to_le_bytes());
            buf.extend_from_slice(&e.to_le_bytes());
        }
        (buf, first)
    }

    #[test]
    fn real_syscalls_on_ordinary_files() {
        // What LinuxVfio does that needs no /dev/vfio: open, pread/pwrite, mmap, and ioctls
        // failing cleanly on a file that is not a VFIO node.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("region");
        std::fs::write(&path, vec![0u8; 8192]).unwrap();
        let sys = LinuxVfio;
        let fd = sys.open(&path).unwrap();
        sys.pwrite(fd, 4100, &0xdead_beefu32.to_le_bytes()).unwrap();
        let mut b = [0u8; 4];
        sys.pread(fd, 4100, &mut b).unwrap();
        assert_eq!(u32::from_le_bytes(b), 0xdead_beef);
        let short = sys.pread(fd, 8190, &mut b).unwrap_err();
        assert_eq!(short.kind(), io::ErrorKind::UnexpectedEof);
        let p = sys.mmap(fd, 4096, 4096).unwrap();
        // SAFETY: 4096 bytes mapped read-write just above; offset 4 is in range and aligned.
        let v = unsafe { p.as_ptr().add(4).cast::<u32>().read_volatile() };
        assert_eq!(v, 0xdead_beef);
        // SAFETY: the mapping above, not used afterwards.
        unsafe { sys.munmap(p, 4096) };
        let e = sys.api_version(fd).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOTTY));
        assert!(sys.group_status(fd).is_err());
        assert!(sys.set_irq_eventfds(fd, 2, &[]).is_err());
        sys.close(fd);
        let e = sys.open(&dir.path().join("missing")).unwrap_err();
        assert_eq!(e.raw_os_error(), Some(libc::ENOENT));
    }

    #[test]
    fn container_on_a_non_vfio_node_fails_with_the_ioctl_named() {
        use crate::vfio::{VfioContainer, VfioError};
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let e = VfioContainer::open(Arc::new(LinuxVfio), dir.path(), "t").unwrap_err();
        assert!(matches!(e, VfioError::NodeMissing { .. }), "{e}");
        std::fs::write(dir.path().join("vfio"), b"").unwrap();
        let e = VfioContainer::open(Arc::new(LinuxVfio), dir.path(), "t").unwrap_err();
        assert!(
            matches!(
                e,
                VfioError::Syscall {
                    op: "VFIO_GET_API_VERSION",
                    ..
                }
            ),
            "{e}"
        );
    }

    #[test]
    fn ioctl_numbers_match_linux_uapi() {
        // From <linux/vfio.h>: _IO(';', 100) = 0x3b64 ... _IO(';', 114) = 0x3b72.
        assert_eq!(VFIO_GET_API_VERSION, 0x3b64);
        assert_eq!(VFIO_GROUP_GET_DEVICE_FD, 0x3b6a);
        assert_eq!(VFIO_DEVICE_SET_IRQS, 0x3b6e);
        assert_eq!(VFIO_IOMMU_MAP_DMA, 0x3b71);
        assert_eq!(VFIO_IOMMU_UNMAP_DMA, 0x3b72);
    }

    #[test]
    fn parses_iova_ranges_through_the_chain() {
        let want = [(0, 0xfedf_ffff), (0xfef0_0000, 0x7f_ffff_ffff)];
        let (buf, first) = cap_chain(&want, true);
        assert_eq!(parse_iova_ranges(&buf, first), want);
        let (buf, first) = cap_chain(&want, false);
        assert_eq!(parse_iova_ranges(&buf, first), want);
    }

    #[test]
    fn hostile_cap_chains_do_not_panic() {
        let (mut buf, first) = cap_chain(&[(0, 0xffff)], false);
        // Truncated range array.
        let short = &buf[..buf.len() - 4];
        assert!(parse_iova_ranges(short, first).is_empty());
        // Offset out of range.
        assert!(parse_iova_ranges(&buf, 10_000).is_empty());
        // A self-loop: next points back at itself; the walk stops.
        buf[first as usize + 4..first as usize + 8].copy_from_slice(&first.to_le_bytes());
        let r = parse_iova_ranges(&buf, first);
        assert!(!r.is_empty() && r.len() <= 64);
        // Inverted range is dropped.
        let (buf, first) = cap_chain(&[(0x2000, 0x1000)], false);
        assert!(parse_iova_ranges(&buf, first).is_empty());
    }
}
