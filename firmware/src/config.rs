//! `ingot.toml`: how a deployment is described (which drives, layout, transforms, mountpoint,
//! console address). `ingot up` without a config file uses [`Config::embedded_default`]:
//! four simulated NVMe drives under the data directory.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// Why a config file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// Could not read the file.
    #[error("cannot read config {path}: {source}")]
    Read {
        /// File.
        path: PathBuf,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
    /// Not valid TOML or wrong fields.
    #[error("invalid config {path}: {source}")]
    Parse {
        /// File.
        path: PathBuf,
        /// What the parser said (line and column included).
        #[source]
        source: toml::de::Error,
    },
    /// Well-formed but inconsistent.
    #[error("invalid config {path}: {why}")]
    Invalid {
        /// File.
        path: PathBuf,
        /// What is wrong.
        why: String,
    },
}

/// Where a drive comes from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum DriveSpec {
    /// A simulated NVMe controller over a sparse file made by `ingot sim create`.
    Sim {
        /// The drive's data file.
        path: PathBuf,
    },
    /// A real NVMe function through VFIO.
    Vfio {
        /// PCI address, e.g. `0000:00:04.0`.
        pci: String,
        /// Namespace id (default 1).
        #[serde(default = "one")]
        nsid: u32,
    },
    /// A plain file or block device.
    File {
        /// Path.
        path: PathBuf,
    },
}

fn one() -> u32 {
    1
}

/// The pool section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PoolSection {
    /// Pool name.
    #[serde(default = "default_pool_name")]
    pub name: String,
    /// `stripe`, `mirror`, `raid10`, `raidz1`, `raidz2`.
    #[serde(default = "default_layout")]
    pub layout: String,
    /// `zstd:N` or `off`.
    #[serde(default = "default_compression")]
    pub compression: String,
    /// `aes-xts` or `off`.
    #[serde(default = "default_encryption")]
    pub encryption: String,
    /// A file holding the passphrase (scripts); otherwise it is asked on the terminal.
    #[serde(default)]
    pub passphrase_file: Option<PathBuf>,
    /// Memory for the decoded-record cache (ARC), e.g. `4G`; `0` disables it. Default: half
    /// of physical memory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<String>,
    /// Idle commit, in milliseconds: once data changed and nothing has changed for this
    /// long, the transaction group commits then instead of at the next txg-interval tick
    /// (and new data left untouched that long is written in the background meanwhile).
    /// `0` disables it. Default: 200.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_commit_ms: Option<u64>,
}

impl PoolSection {
    /// The pool's runtime tunables from this section (defaults for what it leaves out).
    pub fn tunables(&self) -> Result<ingot_pool::Tunables, crate::size::SizeError> {
        let mut t = ingot_pool::Tunables::default();
        if let Some(c) = &self.cache {
            let b: crate::size::ByteSize = c.parse()?;
            t.record_cache_bytes = usize::try_from(b.0).unwrap_or(usize::MAX);
        }
        if let Some(ms) = self.idle_commit_ms {
            t.idle_commit = std::time::Duration::from_millis(ms);
        }
        Ok(t)
    }
}

fn default_pool_name() -> String {
    "tank".into()
}
fn default_layout() -> String {
    "raidz1".into()
}
fn default_compression() -> String {
    "zstd:1".into()
}
fn default_encryption() -> String {
    "aes-xts".into()
}

impl Default for PoolSection {
    fn default() -> Self {
        PoolSection {
            name: default_pool_name(),
            layout: default_layout(),
            compression: default_compression(),
            encryption: default_encryption(),
            passphrase_file: None,
            cache: None,
            idle_commit_ms: None,
        }
    }
}

/// The export section.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportSection {
    /// Where the FUSE file system is mounted (default `DATA/mnt`).
    #[serde(default)]
    pub mountpoint: Option<PathBuf>,
    /// Use the kernel's writeback cache.
    #[serde(default)]
    pub writeback_cache: bool,
    /// Copy writes through the kernel page cache (write-through) instead of sending them to
    /// the pool directly from the writer's buffer (the default).
    #[serde(default)]
    pub cached_writes: bool,
}

/// The console section.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsoleSection {
    /// Listen address.
    #[serde(default = "default_listen")]
    pub listen: String,
}

fn default_listen() -> String {
    "127.0.0.1:8080".into()
}

impl Default for ConsoleSection {
    fn default() -> Self {
        ConsoleSection {
            listen: default_listen(),
        }
    }
}

/// A whole `ingot.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The drives of the pool, in order (plus drives added later, e.g. by `ingot sim add`,
    /// which are not members until a replace puts them in).
    #[serde(default, rename = "drive")]
    pub drives: Vec<DriveSpec>,
    /// Hot spares: blank drives that take over automatically when a member faults.
    #[serde(default, alias = "spare", skip_serializing_if = "Vec::is_empty")]
    pub spares: Vec<DriveSpec>,
    /// Pool settings.
    #[serde(default)]
    pub pool: PoolSection,
    /// Export settings.
    #[serde(default)]
    pub export: ExportSection,
    /// Console settings.
    #[serde(default)]
    pub console: ConsoleSection,
}

impl Config {
    /// The embedded default: four simulated drives `DATA/drives/sim{0..3}.img`, raidz1, zstd:1,
    /// AES-XTS, mounted at `DATA/mnt`, console on 127.0.0.1:8080.
    pub fn embedded_default(data_dir: &Path) -> Config {
        Config {
            drives: (0..4)
                .map(|i| DriveSpec::Sim {
                    path: data_dir.join("drives").join(format!("sim{i}.img")),
                })
                .collect(),
            spares: Vec::new(),
            pool: PoolSection::default(),
            export: ExportSection {
                mountpoint: Some(data_dir.join("mnt")),
                writeback_cache: false,
                cached_writes: false,
            },
            console: ConsoleSection::default(),
        }
    }

    /// Read and check a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(&text, path)
    }

    /// Parse and check config text (`path` only names it in errors).
    pub fn parse(text: &str, path: &Path) -> Result<Config, ConfigError> {
        let cfg: Config = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        let invalid = |why: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            why,
        };
        if cfg.drives.is_empty() {
            return Err(invalid("no [[drive]] entries".into()));
        }
        if !["stripe", "mirror", "raid10", "raidz1", "raidz2"].contains(&cfg.pool.layout.as_str()) {
            return Err(invalid(format!(
                "pool.layout {:?}: expected stripe, mirror, raid10, raidz1 or raidz2",
                cfg.pool.layout
            )));
        }
        if let Err(e) = cfg.pool.tunables() {
            return Err(invalid(format!("pool.cache: {e}")));
        }
        if !["aes-xts", "off"].contains(&cfg.pool.encryption.as_str()) {
            return Err(invalid(format!(
                "pool.encryption {:?}: expected aes-xts or off",
                cfg.pool.encryption
            )));
        }
        Ok(cfg)
    }
}

/// Append a `[[drive]]` entry to the config file at `path`, keeping the rest of the text.
pub fn append_drive(path: &Path, spec: &DriveSpec) -> Result<(), ConfigError> {
    #[derive(Serialize)]
    struct One<'a> {
        drive: [&'a DriveSpec; 1],
    }
    let mut text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let entry = toml::to_string(&One { drive: [spec] }).map_err(|e| ConfigError::Invalid {
        path: path.to_path_buf(),
        why: format!("cannot encode the new drive: {e}"),
    })?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str("\n# Added by the running appliance (ingot sim add).\n");
    text.push_str(&entry);
    // Check the result parses before replacing the file.
    Config::parse(&text, path)?;
    let tmp = path.with_extension("toml.tmp");
    std::fs::write(&tmp, &text)
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_drive_appended_after_other_tables_parses() {
        let t = tempfile::tempdir().unwrap();
        let p = t.path().join("ingot.toml");
        let c = Config::embedded_default(t.path());
        std::fs::write(&p, format!("# header\n{}", toml::to_string(&c).unwrap())).unwrap();
        let new = DriveSpec::Sim {
            path: t.path().join("drives/sim4.img"),
        };
        append_drive(&p, &new).unwrap();
        let back = Config::load(&p).unwrap();
        assert_eq!(back.drives.len(), 5);
        assert_eq!(back.drives[4], new);
        assert!(std::fs::read_to_string(&p).unwrap().starts_with("# header"));
        let with_spares = "spares = [{ kind = \"file\", path = \"/x\" }]\n[[drive]]\nkind = \"file\"\npath = \"/y\"\n";
        assert_eq!(Config::parse(with_spares, &p).unwrap().spares.len(), 1);
    }

    #[test]
    fn parses_a_real_deployment() {
        let text = r#"
            [[drive]]
            kind = "vfio"
            pci = "0000:00:04.0"
            [[drive]]
            kind = "file"
            path = "/dev/sdb"
            [pool]
            name = "vault"
            layout = "mirror"
            [console]
            listen = "0.0.0.0:8080"
        "#;
        let c = Config::parse(text, Path::new("t.toml")).unwrap();
        assert_eq!(c.drives.len(), 2);
        assert_eq!(
            c.drives[0],
            DriveSpec::Vfio {
                pci: "0000:00:04.0".into(),
                nsid: 1
            }
        );
        assert_eq!(c.pool.layout, "mirror");
        assert_eq!(c.pool.compression, "zstd:1");
        assert_eq!(c.console.listen, "0.0.0.0:8080");
        assert_eq!(c.pool.cache, None);
        let with_cache = text.replace("layout = \"mirror\"", "layout = \"mirror\"\ncache = \"3G\"");
        let c = Config::parse(&with_cache, Path::new("t.toml")).unwrap();
        assert_eq!(c.pool.tunables().unwrap().record_cache_bytes, 3 << 30);
        assert!(!c.export.cached_writes && !c.export.writeback_cache);
        let cached = text.replace("[console]", "[export]\ncached_writes = true\n[console]");
        let c = Config::parse(&cached, Path::new("t.toml")).unwrap();
        assert!(c.export.cached_writes);
    }

    #[test]
    fn idle_commit_knob_sets_the_tunable() {
        let base = "[[drive]]\nkind='file'\npath='x'";
        let c = Config::parse(base, Path::new("t.toml")).unwrap();
        assert_eq!(
            c.pool.tunables().unwrap().idle_commit,
            ingot_pool::DEFAULT_IDLE_COMMIT
        );
        for (ms, want) in [(0u64, 0u64), (750, 750)] {
            let text = format!("[pool]\nidle_commit_ms = {ms}\n{base}");
            let c = Config::parse(&text, Path::new("t.toml")).unwrap();
            assert_eq!(
                c.pool.tunables().unwrap().idle_commit,
                std::time::Duration::from_millis(want)
            );
        }
        assert!(Config::parse("[pool]\nidle_commit_ms = -1\n", Path::new("t.toml")).is_err());
    }

    #[test]
    fn a_bad_cache_size_is_refused() {
        let e = Config::parse(
            "[pool]\ncache='lots'\n[[drive]]\nkind='file'\npath='x'",
            Path::new("t.toml"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("pool.cache"), "{e}");
        let c = Config::parse(
            "[pool]\ncache='0'\n[[drive]]\nkind='file'\npath='x'",
            Path::new("t.toml"),
        )
        .unwrap();
        assert_eq!(c.pool.tunables().unwrap().record_cache_bytes, 0);
    }

    #[test]
    fn rejects_bad_configs_with_a_reason() {
        let p = Path::new("t.toml");
        let e = Config::parse(
            "[pool]\nlayout='raid7'\n[[drive]]\nkind='file'\npath='x'",
            p,
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("raid7"), "{e}");
        let e = Config::parse("[pool]\nname='x'", p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("no [[drive]]"), "{e}");
        let e = Config::parse("[[drive]]\nkind='floppy'", p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("t.toml"), "{e}");
        let e = Config::parse("[[drive]]\nkind='file'\npath='x'\nbogus=1", p)
            .unwrap_err()
            .to_string();
        assert!(e.contains("bogus"), "{e}");
    }

    #[test]
    fn embedded_default_is_valid() {
        let c = Config::embedded_default(Path::new("/d"));
        let text = toml::to_string(&c).unwrap();
        assert_eq!(Config::parse(&text, Path::new("x")).unwrap(), c);
    }
}
