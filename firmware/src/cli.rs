//! The command line: `ingot SUBCOMMAND ...`, defined with clap.

use crate::size::ByteSize;
use clap::{Args, Parser, Subcommand};
use std::path::PathBuf;

/// Ingot NAS appliance firmware.
#[derive(Debug, Parser)]
#[command(name = "ingot", version, about, propagate_version = true)]
pub struct Cli {
    /// Log filter (tracing env-filter syntax), e.g. `info`, `ingot_hal=debug`.
    /// Default: `info` for `ingot up`, `warn` for the administration commands.
    #[arg(long, global = true, env = "INGOT_LOG")]
    pub log: Option<String>,
    /// Log as JSON lines instead of text.
    #[arg(long, global = true)]
    pub log_json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Simulated NVMe drives (the embedded default; no hardware needed).
    #[command(subcommand)]
    Sim(SimCommand),
    /// List NVMe controllers and namespaces with identify data and SMART/health.
    Devices(DevicesArgs),
    /// Run the appliance: drives, pool, FUSE export (first run: the embedded default).
    Up(UpArgs),
    /// Create, inspect, import and re-key pools.
    #[command(subcommand)]
    Pool(PoolCommand),
}

/// Which drives a pool command works on. Without any, `./ingot-data/drives` (simulated).
#[derive(Debug, Args, Clone, Default)]
pub struct DriveSelect {
    /// Every simulated drive in this directory.
    #[arg(long)]
    pub sim: Vec<PathBuf>,
    /// One drive: `sim:PATH`, `file:PATH`, `vfio:PCI`, or a path (a simulated drive if it
    /// has a `.json` sidecar, else a plain file).
    #[arg(long = "device", short = 'd')]
    pub devices: Vec<String>,
    /// The drives listed in this `ingot.toml`.
    #[arg(long)]
    pub config: Option<PathBuf>,
}

/// `ingot pool ...`
#[derive(Debug, Subcommand)]
pub enum PoolCommand {
    /// Create a pool (everything on the drives is overwritten).
    Create(PoolCreateArgs),
    /// Show layout, devices, capacity, used, compression ratio and txg.
    Status(PoolStatusArgs),
    /// Import a pool (unlocking it), verify its tree end to end, and close it cleanly.
    Import(PoolImportArgs),
    /// Change the passphrase of an encrypted pool (re-wraps the key; no data is rewritten).
    ChangePassphrase(PoolPassArgs),
}

/// `ingot pool create`
#[derive(Debug, Args)]
pub struct PoolCreateArgs {
    /// Pool name.
    pub name: String,
    /// stripe, mirror, raid10, raidz1 or raidz2.
    #[arg(long, default_value = "raidz1")]
    pub layout: String,
    /// `zstd:LEVEL` or `off`.
    #[arg(long, default_value = "zstd:1")]
    pub compression: String,
    /// `aes-xts` or `off`.
    #[arg(long, default_value = "aes-xts")]
    pub encryption: String,
    /// Read the passphrase from this file (first line) instead of asking.
    #[arg(long)]
    pub passphrase_file: Option<PathBuf>,
    /// Record size of file data, e.g. 128K.
    #[arg(long, default_value = "128K")]
    pub record_size: ByteSize,
    /// The drives.
    #[command(flatten)]
    pub drives: DriveSelect,
}

/// `ingot pool status`
#[derive(Debug, Args)]
pub struct PoolStatusArgs {
    /// Pool name (checked against the drives' labels).
    pub name: Option<String>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// Unlock with the passphrase in this file to report figures kept under encryption.
    #[arg(long)]
    pub passphrase_file: Option<PathBuf>,
    /// The drives.
    #[command(flatten)]
    pub drives: DriveSelect,
}

/// `ingot pool import`
#[derive(Debug, Args)]
pub struct PoolImportArgs {
    /// Pool name (checked against the drives' labels).
    pub name: Option<String>,
    /// Read the passphrase from this file instead of asking.
    #[arg(long)]
    pub passphrase_file: Option<PathBuf>,
    /// Import locked (no passphrase): keyless verification only.
    #[arg(long)]
    pub locked: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// The drives.
    #[command(flatten)]
    pub drives: DriveSelect,
}

/// `ingot pool change-passphrase`
#[derive(Debug, Args)]
pub struct PoolPassArgs {
    /// Pool name (checked against the drives' labels).
    pub name: Option<String>,
    /// The current passphrase, from a file.
    #[arg(long)]
    pub passphrase_file: Option<PathBuf>,
    /// The new passphrase, from a file.
    #[arg(long)]
    pub new_passphrase_file: Option<PathBuf>,
    /// The drives.
    #[command(flatten)]
    pub drives: DriveSelect,
}

/// `ingot sim ...`
#[derive(Debug, Subcommand)]
pub enum SimCommand {
    /// Create sparse-file simulated NVMe drives in a directory.
    Create(SimCreateArgs),
}

/// `ingot sim create`
#[derive(Debug, Args)]
pub struct SimCreateArgs {
    /// Directory for the drives (created if missing).
    pub dir: PathBuf,
    /// How many drives.
    #[arg(long, default_value_t = 4)]
    pub drives: u32,
    /// Size of each drive, e.g. 4G.
    #[arg(long, default_value = "4G")]
    pub size: ByteSize,
    /// Logical block size: 512 or 4096.
    #[arg(long, default_value_t = 4096)]
    pub lba_size: u32,
}

/// `ingot devices`
#[derive(Debug, Args)]
pub struct DevicesArgs {
    /// Simulated drives in this directory (default: `./ingot-data/drives` if it exists).
    #[arg(long)]
    pub sim: Vec<PathBuf>,
    /// NVMe PCI functions to open through VFIO (`0000:00:04.0`), or `all`.
    #[arg(long)]
    pub vfio: Vec<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `ingot up`
#[derive(Debug, Args)]
pub struct UpArgs {
    /// Data directory: simulated drives, `ingot.toml`, default mountpoint.
    #[arg(long, default_value = crate::DEFAULT_DATA_DIR)]
    pub data: PathBuf,
    /// Use this config instead of `DATA/ingot.toml` (or the embedded default).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Read the pool passphrase from this file instead of asking on the terminal.
    #[arg(long)]
    pub passphrase_file: Option<PathBuf>,
    /// Size of each simulated drive made on first run.
    #[arg(long, default_value = "8G")]
    pub drive_size: ByteSize,
    /// Mount the file system here (default from the config, else `DATA/mnt`).
    #[arg(long)]
    pub mountpoint: Option<PathBuf>,
    /// Let the kernel cache writes (FUSE writeback cache).
    #[arg(long)]
    pub writeback_cache: bool,
    /// Console address (default from the config: 127.0.0.1:8080; port 0 picks a free one).
    #[arg(long)]
    pub listen: Option<String>,
    /// Set the console's admin password from this file (scripted installs); otherwise the
    /// console asks for one on first visit.
    #[arg(long)]
    pub admin_password_file: Option<PathBuf>,
}
