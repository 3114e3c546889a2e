//! Persistent simulated drives: a sparse data file plus a small JSON sidecar.
//!
//! A drive `NAME` in a directory is `NAME.img` (the namespace's bytes, sparse, exactly
//! the namespace size) and `NAME.json` (serial, model, firmware, LBA size, size,
//! creation time and health counters). [`SimDrive::create`] makes one,
//! [`SimDrive::load`] validates one, [`list_drives`] finds them in a directory.

use super::SimError;
use super::health::PersistedHealth;
use serde::{Deserialize, Serialize};
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

/// The sidecar's format tag.
pub const SIDECAR_FORMAT: &str = "ingot-sim-nvme/1";
/// Model string of every simulated drive.
pub const SIM_MODEL: &str = "Ingot Simulated NVMe";
/// Firmware revision of the simulator.
pub const SIM_FIRMWARE: &str = "1.0";
/// Extension of the data file.
pub const DATA_EXT: &str = "img";
/// Extension of the sidecar.
pub const SIDECAR_EXT: &str = "json";
/// Largest sidecar read (it is a few hundred bytes).
const SIDECAR_MAX: u64 = 64 * 1024;

/// The sidecar's contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SimDriveMeta {
    /// Always [`SIDECAR_FORMAT`].
    pub format: String,
    /// Serial number (Identify SN, at most 20 ASCII characters).
    pub serial: String,
    /// Model (Identify MN).
    pub model: String,
    /// Firmware revision (Identify FR).
    pub firmware: String,
    /// Logical block size: 512 or 4096.
    pub lba_size: u32,
    /// Namespace size in bytes (a multiple of `lba_size`).
    pub size_bytes: u64,
    /// Creation time, seconds since the Unix epoch.
    pub created_unix: u64,
    /// Health counters carried across sessions.
    #[serde(default)]
    pub health: PersistedHealth,
}

/// A simulated drive on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimDrive {
    /// The data file (`NAME.img`).
    pub data_path: PathBuf,
    /// The sidecar (`NAME.json`).
    pub sidecar_path: PathBuf,
    /// What the sidecar says.
    pub meta: SimDriveMeta,
}

/// Check the geometry and identity fields a drive can be created or opened with.
pub(super) fn validate_geometry(
    what: &str,
    size_bytes: u64,
    lba_size: u32,
    serial: &str,
) -> Result<(), String> {
    if lba_size != 512 && lba_size != 4096 {
        return Err(format!("{what}: LBA size {lba_size} is not 512 or 4096"));
    }
    if size_bytes == 0 || !size_bytes.is_multiple_of(u64::from(lba_size)) {
        return Err(format!(
            "{what}: size {size_bytes} is not a positive multiple of the LBA size {lba_size}"
        ));
    }
    if serial.is_empty() || serial.len() > 20 || !serial.bytes().all(|c| c.is_ascii_graphic()) {
        return Err(format!(
            "{what}: serial {serial:?} must be 1-20 printable ASCII characters without spaces"
        ));
    }
    Ok(())
}

impl SimDrive {
    /// The data and sidecar paths for a drive given either of them (or a bare `NAME`).
    pub fn paths(path: &Path) -> (PathBuf, PathBuf) {
        (
            path.with_extension(DATA_EXT),
            path.with_extension(SIDECAR_EXT),
        )
    }

    /// Create a new drive at `path` (`DIR/NAME`, `DIR/NAME.img` or `DIR/NAME.json`): a sparse
    /// data file of `size_bytes` and its sidecar. Fails if either file exists.
    pub fn create(
        path: &Path,
        size_bytes: u64,
        lba_size: u32,
        serial: &str,
    ) -> Result<SimDrive, SimError> {
        let (data_path, sidecar_path) = Self::paths(path);
        validate_geometry(
            &data_path.display().to_string(),
            size_bytes,
            lba_size,
            serial,
        )
        .map_err(|reason| SimError::Config { reason })?;
        let io_err = |path: &Path, op: &'static str| {
            let path = path.display().to_string();
            move |source| SimError::Io { path, op, source }
        };
        if sidecar_path.exists() {
            return Err(SimError::Exists {
                path: sidecar_path.display().to_string(),
            });
        }
        let data = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&data_path)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::AlreadyExists {
                    SimError::Exists {
                        path: data_path.display().to_string(),
                    }
                } else {
                    io_err(&data_path, "create data file")(e)
                }
            })?;
        data.set_len(size_bytes)
            .map_err(io_err(&data_path, "size data file"))?;
        data.sync_all()
            .map_err(io_err(&data_path, "sync data file"))?;
        let meta = SimDriveMeta {
            format: SIDECAR_FORMAT.to_string(),
            serial: serial.to_string(),
            model: SIM_MODEL.to_string(),
            firmware: SIM_FIRMWARE.to_string(),
            lba_size,
            size_bytes,
            created_unix: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            health: PersistedHealth {
                clean_shutdown: true,
                ..PersistedHealth::default()
            },
        };
        let drive = SimDrive {
            data_path,
            sidecar_path,
            meta,
        };
        drive.write_sidecar()?;
        tracing::info!(
            path = %drive.data_path.display(),
            size_bytes,
            lba_size,
            serial,
            "sim: created drive"
        );
        Ok(drive)
    }

    /// Read and validate a drive's sidecar and check its data file.
    pub fn load(path: &Path) -> Result<SimDrive, SimError> {
        let (data_path, sidecar_path) = Self::paths(path);
        let shown = sidecar_path.display().to_string();
        let bad = |reason: String| SimError::Sidecar {
            path: shown.clone(),
            reason,
        };
        let f = File::open(&sidecar_path).map_err(|source| SimError::Io {
            path: shown.clone(),
            op: "open sidecar",
            source,
        })?;
        let len = f
            .metadata()
            .map_err(|source| SimError::Io {
                path: shown.clone(),
                op: "stat sidecar",
                source,
            })?
            .len();
        if len > SIDECAR_MAX {
            return Err(bad(format!("{len} bytes is too large for a sidecar")));
        }
        let text = fs::read(&sidecar_path).map_err(|source| SimError::Io {
            path: shown.clone(),
            op: "read sidecar",
            source,
        })?;
        let meta: SimDriveMeta = serde_json::from_slice(&text)
            .map_err(|e| bad(format!("not valid sidecar JSON: {e}")))?;
        if meta.format != SIDECAR_FORMAT {
            return Err(bad(format!(
                "format {:?}, expected {SIDECAR_FORMAT:?}",
                meta.format
            )));
        }
        validate_geometry(&shown, meta.size_bytes, meta.lba_size, &meta.serial).map_err(bad)?;
        let data_len = fs::metadata(&data_path)
            .map_err(|source| SimError::Io {
                path: data_path.display().to_string(),
                op: "stat data file",
                source,
            })?
            .len();
        if data_len != meta.size_bytes {
            return Err(SimError::DataFile {
                path: data_path.display().to_string(),
                reason: format!(
                    "data file is {data_len} bytes, sidecar says {}",
                    meta.size_bytes
                ),
            });
        }
        Ok(SimDrive {
            data_path,
            sidecar_path,
            meta,
        })
    }

    /// The drive's name (file stem).
    pub fn name(&self) -> String {
        self.data_path
            .file_stem()
            .map_or_else(|| "sim".to_string(), |s| s.to_string_lossy().into_owned())
    }

    /// Write the sidecar atomically (temporary file, fsync, rename).
    pub(super) fn write_sidecar(&self) -> Result<(), SimError> {
        let shown = self.sidecar_path.display().to_string();
        let io = |op: &'static str| {
            let path = shown.clone();
            move |source| SimError::Io { path, op, source }
        };
        let json = serde_json::to_vec_pretty(&self.meta).map_err(|e| SimError::Sidecar {
            path: shown.clone(),
            reason: format!("cannot encode: {e}"),
        })?;
        let tmp = self.sidecar_path.with_extension("json.tmp");
        let mut f = File::create(&tmp).map_err(io("create sidecar"))?;
        f.write_all(&json).map_err(io("write sidecar"))?;
        f.write_all(b"\n").map_err(io("write sidecar"))?;
        f.sync_all().map_err(io("sync sidecar"))?;
        fs::rename(&tmp, &self.sidecar_path).map_err(io("rename sidecar"))?;
        Ok(())
    }
}

/// Create `count` drives `sim0`..`sim{count-1}` in `dir` (created if missing), each
/// `size_bytes` with `lba_size` blocks and a serial unique to this set.
pub fn create_drives(
    dir: &Path,
    count: u32,
    size_bytes: u64,
    lba_size: u32,
) -> Result<Vec<SimDrive>, SimError> {
    fs::create_dir_all(dir).map_err(|source| SimError::Io {
        path: dir.display().to_string(),
        op: "create directory",
        source,
    })?;
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as u32;
    (0..count)
        .map(|i| {
            SimDrive::create(
                &dir.join(format!("sim{i}")),
                size_bytes,
                lba_size,
                &format!("SIM{stamp:08X}{i:03}"),
            )
        })
        .collect()
}

/// Every simulated drive in `dir` (each `*.json` sidecar), sorted by name. A drive whose
/// sidecar or data file is broken appears as an `Err` describing what is wrong.
pub fn list_drives(dir: &Path) -> Result<Vec<Result<SimDrive, SimError>>, SimError> {
    let entries = fs::read_dir(dir).map_err(|source| SimError::Io {
        path: dir.display().to_string(),
        op: "list directory",
        source,
    })?;
    let mut sidecars: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == SIDECAR_EXT) && p.is_file())
        .collect();
    sidecars.sort();
    Ok(sidecars.iter().map(|p| SimDrive::load(p)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_load_list_and_reject_bad_sidecars() {
        let dir = tempfile::tempdir().unwrap();
        let d = SimDrive::create(&dir.path().join("nvme0"), 1 << 20, 4096, "SIM0").unwrap();
        assert_eq!(d.name(), "nvme0");
        assert!(matches!(
            SimDrive::create(&dir.path().join("nvme0.img"), 1 << 20, 4096, "SIM0"),
            Err(SimError::Exists { .. })
        ));
        assert!(matches!(
            SimDrive::create(&dir.path().join("x"), 1000, 512, "S"),
            Err(SimError::Config { .. })
        ));
        assert_eq!(SimDrive::load(&d.sidecar_path).unwrap(), d);
        SimDrive::create(&dir.path().join("nvme1"), 1 << 20, 512, "SIM1").unwrap();
        fs::write(dir.path().join("broken.json"), b"{ not json").unwrap();
        fs::write(
            dir.path().join("short.json"),
            serde_json::to_vec(&SimDriveMeta {
                serial: "SHORT".into(),
                ..d.meta.clone()
            })
            .unwrap(),
        )
        .unwrap();
        fs::write(dir.path().join("short.img"), b"tiny").unwrap();
        let list = list_drives(dir.path()).unwrap();
        let names: Vec<String> = list
            .iter()
            .map(|r| match r {
                Ok(d) => d.name(),
                Err(e) => format!("err:{e}"),
            })
            .collect();
        assert_eq!(names.len(), 4);
        assert!(names[0].starts_with("err:") && names[0].contains("broken.json"));
        assert_eq!(&names[1..3], ["nvme0", "nvme1"]);
        assert!(names[3].starts_with("err:") && names[3].contains("4 bytes"));
    }
}
