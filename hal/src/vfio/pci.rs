//! PCI functions through sysfs: find NVMe controllers, bind them to vfio-pci, find their
//! IOMMU group and wait for its `/dev/vfio/N` node.
//!
//! The sysfs and `/dev` roots are injectable, so the logic runs in unit tests on a fake tree.

use std::fmt;
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// PCI class code of an NVM Express controller (mass storage / NVM / NVMe).
pub const NVME_CLASS: u32 = 0x01_08_02;

/// The kernel driver that hands PCI functions to userspace.
pub const VFIO_PCI_DRIVER: &str = "vfio-pci";

/// A PCI function address, `DDDD:BB:DD.F`, validated (it is used in sysfs paths).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PciAddress(String);

impl PciAddress {
    /// Parse `DDDD:BB:DD.F` (lower-case hex, as sysfs names devices).
    pub fn parse(s: &str) -> Result<Self, PciError> {
        let b = s.as_bytes();
        let hex = |r: std::ops::Range<usize>| {
            b[r].iter()
                .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(c))
        };
        let ok = b.len() == 12
            && b[4] == b':'
            && b[7] == b':'
            && b[10] == b'.'
            && hex(0..4)
            && hex(5..7)
            && hex(8..10)
            && (b'0'..=b'7').contains(&b[11])
            && u8::from_str_radix(&s[8..10], 16).is_ok_and(|dev| dev < 32);
        if ok {
            Ok(PciAddress(s.to_string()))
        } else {
            Err(PciError::BadAddress {
                address: s.to_string(),
            })
        }
    }

    /// The address as sysfs spells it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PciAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Why a PCI/sysfs operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PciError {
    /// Not a `DDDD:BB:DD.F` address.
    #[error("{address:?} is not a PCI address (expected DDDD:BB:DD.F)")]
    BadAddress {
        /// What was given.
        address: String,
    },
    /// No such device in sysfs.
    #[error("{address}: no such PCI device ({path})")]
    NoDevice {
        /// The address.
        address: PciAddress,
        /// The sysfs path looked at.
        path: PathBuf,
    },
    /// The device has no IOMMU group.
    #[error(
        "{address}: no IOMMU group; is an IOMMU present and enabled (intel_iommu=on / amd_iommu=on)?"
    )]
    NoIommuGroup {
        /// The address.
        address: PciAddress,
    },
    /// A sysfs read or write failed.
    #[error("{path}: {op} failed: {source}")]
    Sysfs {
        /// The file.
        path: PathBuf,
        /// What was attempted.
        op: &'static str,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The device did not end up bound to vfio-pci.
    #[error(
        "{address}: not bound to vfio-pci after {waited:?} (driver: {driver}); is the vfio-pci module loaded?"
    )]
    NotBound {
        /// The address.
        address: PciAddress,
        /// The driver it is bound to, or "none".
        driver: String,
        /// How long we waited.
        waited: Duration,
    },
    /// `/dev/vfio/N` did not appear.
    #[error("{address}: {path} did not appear within {waited:?}")]
    NoGroupNode {
        /// The address.
        address: PciAddress,
        /// The node waited for.
        path: PathBuf,
        /// How long we waited.
        waited: Duration,
    },
}

/// What [`PciSysfs::bind_vfio`] did and where the device now is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundDevice {
    /// The function.
    pub address: PciAddress,
    /// The driver it was bound to before, if any.
    pub previous_driver: Option<String>,
    /// Its IOMMU group number.
    pub group: u32,
    /// The group's VFIO node (`/dev/vfio/N`).
    pub group_node: PathBuf,
}

/// The PCI bus as sysfs shows it, under an injectable root.
#[derive(Debug, Clone)]
pub struct PciSysfs {
    sys: PathBuf,
    dev_vfio: PathBuf,
    poll: Duration,
}

impl Default for PciSysfs {
    fn default() -> Self {
        PciSysfs::new("/sys", "/dev/vfio")
    }
}

impl PciSysfs {
    /// Sysfs mounted at `sys` (normally `/sys`) and VFIO nodes in `dev_vfio` (normally `/dev/vfio`).
    pub fn new(sys: impl Into<PathBuf>, dev_vfio: impl Into<PathBuf>) -> Self {
        PciSysfs {
            sys: sys.into(),
            dev_vfio: dev_vfio.into(),
            poll: Duration::from_millis(10),
        }
    }

    /// Where the VFIO nodes live.
    pub fn dev_vfio(&self) -> &Path {
        &self.dev_vfio
    }

    fn devices_dir(&self) -> PathBuf {
        self.sys.join("bus/pci/devices")
    }

    fn device_dir(&self, address: &PciAddress) -> PathBuf {
        self.devices_dir().join(address.as_str())
    }

    fn sysfs_err<'a>(path: &'a Path, op: &'static str) -> impl FnOnce(io::Error) -> PciError + 'a {
        move |source| PciError::Sysfs {
            path: path.to_path_buf(),
            op,
            source,
        }
    }

    fn write_attr(path: &Path, value: &str) -> Result<(), PciError> {
        fs::write(path, value).map_err(Self::sysfs_err(path, "write"))
    }

    /// The PCI class code of a function (e.g. [`NVME_CLASS`]).
    pub fn class(&self, address: &PciAddress) -> Result<u32, PciError> {
        let path = self.device_dir(address).join("class");
        let text = fs::read_to_string(&path).map_err(Self::sysfs_err(&path, "read"))?;
        let t = text.trim();
        u32::from_str_radix(t.strip_prefix("0x").unwrap_or(t), 16).map_err(|_| PciError::Sysfs {
            path: path.clone(),
            op: "parse",
            source: io::Error::new(io::ErrorKind::InvalidData, format!("class {t:?}")),
        })
    }

    /// Every NVMe controller function on the bus, sorted by address.
    pub fn nvme_functions(&self) -> Result<Vec<PciAddress>, PciError> {
        let dir = self.devices_dir();
        let mut found = Vec::new();
        for entry in fs::read_dir(&dir).map_err(Self::sysfs_err(&dir, "list"))? {
            let entry = entry.map_err(Self::sysfs_err(&dir, "list"))?;
            let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                continue;
            };
            let Ok(address) = PciAddress::parse(&name) else {
                continue;
            };
            // A function we cannot read the class of is not one we can drive: skip it.
            if self.class(&address).is_ok_and(|c| c == NVME_CLASS) {
                found.push(address);
            }
        }
        found.sort();
        Ok(found)
    }

    /// The driver a function is bound to, if any.
    pub fn driver(&self, address: &PciAddress) -> Result<Option<String>, PciError> {
        let dir = self.device_dir(address);
        if !dir.exists() {
            return Err(PciError::NoDevice {
                address: address.clone(),
                path: dir,
            });
        }
        match fs::read_link(dir.join("driver")) {
            Ok(target) => Ok(target
                .file_name()
                .and_then(|n| n.to_str())
                .map(str::to_string)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(PciError::Sysfs {
                path: dir.join("driver"),
                op: "readlink",
                source: e,
            }),
        }
    }

    /// The IOMMU group number of a function.
    pub fn iommu_group(&self, address: &PciAddress) -> Result<u32, PciError> {
        let link = self.device_dir(address).join("iommu_group");
        let target = match fs::read_link(&link) {
            Ok(t) => t,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                if !self.device_dir(address).exists() {
                    return Err(PciError::NoDevice {
                        address: address.clone(),
                        path: self.device_dir(address),
                    });
                }
                return Err(PciError::NoIommuGroup {
                    address: address.clone(),
                });
            }
            Err(e) => {
                return Err(PciError::Sysfs {
                    path: link,
                    op: "readlink",
                    source: e,
                });
            }
        };
        target
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| PciError::Sysfs {
                path: link.clone(),
                op: "parse",
                source: io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("iommu_group -> {}", target.display()),
                ),
            })
    }

    /// Wait (polling) until `done` holds or `timeout` passes; checks at least once.
    fn wait_for(&self, timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
        let start = Instant::now();
        loop {
            if done() {
                return true;
            }
            if start.elapsed() >= timeout {
                return false;
            }
            std::thread::sleep(self.poll);
        }
    }

    /// Bind a function to vfio-pci (unbinding it from its current driver first), then wait up
    /// to `timeout` for the binding and for its `/dev/vfio/N` node.
    pub fn bind_vfio(
        &self,
        address: &PciAddress,
        timeout: Duration,
    ) -> Result<BoundDevice, PciError> {
        let dir = self.device_dir(address);
        let previous_driver = self.driver(address)?;
        let group = self.iommu_group(address)?;
        if previous_driver.as_deref() != Some(VFIO_PCI_DRIVER) {
            if let Some(old) = &previous_driver {
                tracing::info!(device = %address, driver = %old, "unbinding from kernel driver");
                Self::write_attr(&dir.join("driver/unbind"), address.as_str())?;
            }
            Self::write_attr(&dir.join("driver_override"), VFIO_PCI_DRIVER)?;
            Self::write_attr(&self.sys.join("bus/pci/drivers_probe"), address.as_str())?;
            let bound = self.wait_for(timeout, || {
                self.driver(address)
                    .is_ok_and(|d| d.as_deref() == Some(VFIO_PCI_DRIVER))
            });
            if !bound {
                return Err(PciError::NotBound {
                    address: address.clone(),
                    driver: self.driver(address)?.unwrap_or_else(|| "none".to_string()),
                    waited: timeout,
                });
            }
        }
        let group_node = self.dev_vfio.join(group.to_string());
        if !self.wait_for(timeout, || group_node.exists()) {
            return Err(PciError::NoGroupNode {
                address: address.clone(),
                path: group_node,
                waited: timeout,
            });
        }
        tracing::info!(device = %address, group, "bound to vfio-pci");
        Ok(BoundDevice {
            address: address.clone(),
            previous_driver,
            group,
            group_node,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    /// A fake sysfs + /dev/vfio tree.
    pub(crate) struct FakeTree {
        pub dir: tempfile::TempDir,
    }

    impl FakeTree {
        pub fn new() -> Self {
            let dir = tempfile::tempdir().unwrap();
            for d in [
                "sys/bus/pci/devices",
                "sys/bus/pci/drivers/vfio-pci",
                "sys/bus/pci/drivers/nvme",
                "sys/kernel/iommu_groups",
                "dev/vfio",
            ] {
                fs::create_dir_all(dir.path().join(d)).unwrap();
            }
            fs::write(dir.path().join("sys/bus/pci/drivers_probe"), "").unwrap();
            FakeTree { dir }
        }
        pub fn sysfs(&self) -> PciSysfs {
            PciSysfs::new(
                self.dir.path().join("sys"),
                self.dir.path().join("dev/vfio"),
            )
        }
        pub fn path(&self, p: &str) -> PathBuf {
            self.dir.path().join(p)
        }
        /// Add a function with `class`, optional driver and optional IOMMU group.
        pub fn add(&self, bdf: &str, class: u32, driver: Option<&str>, group: Option<u32>) {
            let d = self.path(&format!("sys/bus/pci/devices/{bdf}"));
            fs::create_dir_all(&d).unwrap();
            fs::write(d.join("class"), format!("0x{class:06x}\n")).unwrap();
            fs::write(d.join("driver_override"), "(null)\n").unwrap();
            if let Some(drv) = driver {
                self.set_driver(bdf, drv);
            }
            if let Some(g) = group {
                let gd = self.path(&format!("sys/kernel/iommu_groups/{g}"));
                fs::create_dir_all(&gd).unwrap();
                symlink(&gd, d.join("iommu_group")).unwrap();
            }
        }
        pub fn set_driver(&self, bdf: &str, drv: &str) {
            let d = self.path(&format!("sys/bus/pci/devices/{bdf}"));
            let dd = self.path(&format!("sys/bus/pci/drivers/{drv}"));
            fs::create_dir_all(&dd).unwrap();
            fs::write(dd.join("unbind"), "").unwrap();
            let _ = fs::remove_file(d.join("driver"));
            symlink(&dd, d.join("driver")).unwrap();
        }
        pub fn add_group_node(&self, g: u32) {
            fs::write(self.path(&format!("dev/vfio/{g}")), "").unwrap();
        }
    }

    fn addr(s: &str) -> PciAddress {
        PciAddress::parse(s).unwrap()
    }

    #[test]
    fn addresses_are_validated() {
        assert!(PciAddress::parse("0000:00:04.0").is_ok());
        assert!(PciAddress::parse("0000:3a:1f.7").is_ok());
        for bad in [
            "",
            "0000:00:04",
            "0000:00:04.8",
            "0000:00:20.0",
            "0000:00:04.0/../x",
            "00:04.0",
            "0000:00:0G.0",
            "0000:00:04.0 ",
            "0000-00:04.0",
            "0000:00:04:0",
        ] {
            assert!(
                matches!(PciAddress::parse(bad), Err(PciError::BadAddress { .. })),
                "{bad:?} accepted"
            );
        }
    }

    #[test]
    fn finds_only_nvme_functions_sorted() {
        let t = FakeTree::new();
        t.add("0000:00:05.0", NVME_CLASS, Some("nvme"), Some(4));
        t.add("0000:00:04.0", NVME_CLASS, None, Some(3));
        t.add("0000:00:02.0", 0x030000, None, Some(1)); // VGA
        t.add("0000:00:1f.2", 0x010601, Some("ahci"), Some(2)); // AHCI
        fs::create_dir_all(t.path("sys/bus/pci/devices/not-a-bdf")).unwrap();
        let s = t.sysfs();
        assert_eq!(
            s.nvme_functions().unwrap(),
            vec![addr("0000:00:04.0"), addr("0000:00:05.0")]
        );
        assert_eq!(
            s.driver(&addr("0000:00:05.0")).unwrap().as_deref(),
            Some("nvme")
        );
        assert_eq!(s.driver(&addr("0000:00:04.0")).unwrap(), None);
        assert_eq!(s.iommu_group(&addr("0000:00:05.0")).unwrap(), 4);
        assert!(matches!(
            s.driver(&addr("0000:00:09.0")),
            Err(PciError::NoDevice { .. })
        ));
    }

    #[test]
    fn missing_iommu_group_is_a_clear_error() {
        let t = FakeTree::new();
        t.add("0000:00:04.0", NVME_CLASS, None, None);
        let e = t
            .sysfs()
            .bind_vfio(&addr("0000:00:04.0"), Duration::ZERO)
            .unwrap_err();
        assert!(matches!(e, PciError::NoIommuGroup { .. }), "{e}");
        assert!(e.to_string().contains("intel_iommu=on"));
    }

    #[test]
    fn already_bound_device_only_waits_for_its_node() {
        let t = FakeTree::new();
        t.add("0000:00:04.0", NVME_CLASS, Some("vfio-pci"), Some(3));
        t.add_group_node(3);
        let b = t
            .sysfs()
            .bind_vfio(&addr("0000:00:04.0"), Duration::ZERO)
            .unwrap();
        assert_eq!(b.group, 3);
        assert_eq!(b.group_node, t.path("dev/vfio/3"));
        assert_eq!(b.previous_driver.as_deref(), Some("vfio-pci"));
        // Nothing was written: no unbind, no override.
        assert_eq!(
            fs::read_to_string(t.path("sys/bus/pci/devices/0000:00:04.0/driver_override")).unwrap(),
            "(null)\n"
        );
        assert_eq!(
            fs::read_to_string(t.path("sys/bus/pci/drivers_probe")).unwrap(),
            ""
        );
    }

    #[test]
    fn bind_unbinds_sets_override_and_probes() {
        let t = FakeTree::new();
        t.add("0000:00:05.0", NVME_CLASS, Some("nvme"), Some(4));
        let s = t.sysfs();
        // The fake kernel never rebinds, so this times out, but every write must have happened.
        let e = s
            .bind_vfio(&addr("0000:00:05.0"), Duration::ZERO)
            .unwrap_err();
        match &e {
            PciError::NotBound { driver, .. } => assert_eq!(driver, "nvme"),
            other => panic!("unexpected {other}"),
        }
        assert_eq!(
            fs::read_to_string(t.path("sys/bus/pci/drivers/nvme/unbind")).unwrap(),
            "0000:00:05.0"
        );
        assert_eq!(
            fs::read_to_string(t.path("sys/bus/pci/devices/0000:00:05.0/driver_override")).unwrap(),
            "vfio-pci"
        );
        assert_eq!(
            fs::read_to_string(t.path("sys/bus/pci/drivers_probe")).unwrap(),
            "0000:00:05.0"
        );
        // Once "the kernel" binds it and creates the node, a second call succeeds.
        t.set_driver("0000:00:05.0", "vfio-pci");
        t.add_group_node(4);
        let b = s.bind_vfio(&addr("0000:00:05.0"), Duration::ZERO).unwrap();
        assert_eq!(b.group_node, t.path("dev/vfio/4"));
    }

    #[test]
    fn missing_group_node_times_out_with_its_path() {
        let t = FakeTree::new();
        t.add("0000:00:04.0", NVME_CLASS, Some("vfio-pci"), Some(9));
        let e = t
            .sysfs()
            .bind_vfio(&addr("0000:00:04.0"), Duration::ZERO)
            .unwrap_err();
        assert!(
            matches!(&e, PciError::NoGroupNode { path, .. } if path.ends_with("dev/vfio/9")),
            "{e}"
        );
    }
}
