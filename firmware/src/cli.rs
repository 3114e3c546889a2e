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
    /// Scrub: read every allocated block (every column and copy), repair bad ones.
    Scrub(PoolScrubArgs),
    /// Replace a pool member by another device and resilver onto it.
    Replace(PoolReplaceArgs),
    /// Reset the error counters and the list of damaged blocks.
    Clear(PoolClearArgs),
}

/// Which running appliance a command talks to. Without `--data`, the one holding the
/// named pool (`$INGOT_RUN_DIR/NAME.json`), else the one using `./ingot-data`, else the
/// only one running; with none, the command acts on the drives directly.
#[derive(Debug, Args, Clone, Default)]
pub struct ApplianceSelect {
    /// The appliance whose data directory is DIR.
    #[arg(long, value_name = "DIR")]
    pub data: Option<PathBuf>,
}

/// `ingot pool replace`
#[derive(Debug, Args)]
pub struct PoolReplaceArgs {
    /// Pool name.
    pub name: String,
    /// The member to replace: device id (`nvme1`), simulated drive name (`sim1`) or
    /// location; acting on the drives directly, its column number.
    pub old: String,
    /// The new device: device id or drive name of an unassigned drive of the appliance;
    /// acting on the drives directly, a drive spec (`sim:PATH`, `file:PATH`, `vfio:PCI`).
    pub new: String,
    /// Wait for the resilver to finish, with a progress line on a terminal.
    #[arg(long)]
    pub wait: bool,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
    /// The appliance.
    #[command(flatten)]
    pub appliance: ApplianceSelect,
    /// The drives (when no appliance holds the pool).
    #[command(flatten)]
    pub drives: DriveSelect,
    /// Unlock an encrypted pool with the passphrase in this file (direct mode).
    #[arg(long)]
    pub passphrase_file: Option<PathBuf>,
}

/// `ingot pool clear`
#[derive(Debug, Args)]
pub struct PoolClearArgs {
    /// Pool name.
    pub name: Option<String>,
    /// Print the status after clearing as JSON.
    #[arg(long)]
    pub json: bool,
    /// The appliance.
    #[command(flatten)]
    pub appliance: ApplianceSelect,
}

/// `ingot pool scrub`
#[derive(Debug, Args)]
pub struct PoolScrubArgs {
    /// Pool name (checked against the drives' labels).
    pub name: Option<String>,
    /// Show a progress line (percentage, rate, ETA) on a terminal while it runs. Acting on
    /// the drives directly, the command always runs the scrub to its end.
    #[arg(long)]
    pub wait: bool,
    /// Print the result as JSON.
    #[arg(long)]
    pub json: bool,
    /// Unlock an encrypted pool with the passphrase in this file; without it the scrub
    /// runs locked (keyless) and still repairs (the verified ciphertext needs no key).
    #[arg(long)]
    pub passphrase_file: Option<PathBuf>,
    /// Cap scrub I/O at this many bytes per second (e.g. `200M`).
    #[arg(long)]
    pub rate_limit: Option<ByteSize>,
    /// Start over even if an interrupted scrub saved its position (by default it resumes).
    #[arg(long)]
    pub restart: bool,
    /// Pause the running scrub (running appliance only).
    #[arg(long, conflicts_with_all = ["resume", "cancel"])]
    pub pause: bool,
    /// Resume a paused scrub (running appliance only).
    #[arg(long, conflicts_with_all = ["pause", "cancel"])]
    pub resume: bool,
    /// Cancel the running scrub (running appliance only).
    #[arg(long, conflicts_with_all = ["pause", "resume"])]
    pub cancel: bool,
    /// The appliance.
    #[command(flatten)]
    pub appliance: ApplianceSelect,
    /// The drives.
    #[command(flatten)]
    pub drives: DriveSelect,
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
    /// The appliance.
    #[command(flatten)]
    pub appliance: ApplianceSelect,
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
    /// Fault drills on a running appliance's simulated drives (like ZFS zinject).
    Fault(SimFaultArgs),
    /// Create a blank simulated drive and hot-add it to a running appliance.
    Add(SimAddArgs),
    /// List a running appliance's simulated drives and the faults injected so far.
    List(SimListArgs),
}

/// `ingot sim fault`
#[derive(Debug, Args)]
pub struct SimFaultArgs {
    /// The appliance's data directory.
    #[arg(long, default_value = crate::DEFAULT_DATA_DIR)]
    pub data: PathBuf,
    /// The drive: device id (`nvme1`) or drive name (`sim1`).
    pub drive: String,
    /// The fault.
    #[command(subcommand)]
    pub fault: FaultCommand,
}

/// What `ingot sim fault` does to the drive.
#[derive(Debug, Subcommand)]
pub enum FaultCommand {
    /// Pull the drive (surprise hot-unplug).
    Remove,
    /// Put a pulled drive back; the pool resilvers what it missed.
    Reinsert,
    /// Fail I/O commands with an NVMe status, e.g. `--status 2:81` (media: unrecovered read).
    Fail {
        /// `SCT:SC` (hex or decimal: `2:0x81`).
        #[arg(long)]
        status: String,
        /// Only the next N commands (default: all until `clear`).
        #[arg(long)]
        count: Option<u32>,
    },
    /// Hold I/O commands this many milliseconds (past the timeout: abort, reset, retry).
    Delay {
        /// Milliseconds.
        #[arg(long)]
        ms: u64,
        /// Only the next N commands (default: all until `clear`).
        #[arg(long)]
        count: Option<u32>,
    },
    /// Silently corrupt sectors.
    Corrupt {
        /// First logical block.
        #[arg(long)]
        lba: u64,
        /// How many blocks.
        #[arg(long, default_value_t = 1)]
        blocks: u64,
    },
    /// Remove every fault rule (corrupted sectors stay corrupted).
    Clear,
}

/// `ingot sim add`
#[derive(Debug, Args)]
pub struct SimAddArgs {
    /// The appliance's data directory.
    #[arg(long, default_value = crate::DEFAULT_DATA_DIR)]
    pub data: PathBuf,
    /// Size of the new drive (default: that of the appliance's first drive).
    #[arg(long)]
    pub size: Option<ByteSize>,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
}

/// `ingot sim list`
#[derive(Debug, Args)]
pub struct SimListArgs {
    /// The appliance's data directory.
    #[arg(long, default_value = crate::DEFAULT_DATA_DIR)]
    pub data: PathBuf,
    /// Print JSON.
    #[arg(long)]
    pub json: bool,
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
    /// Copy writes through the kernel page cache instead of straight from the writer's
    /// buffer to the pool (direct writes are the default).
    #[arg(long, conflicts_with = "writeback_cache")]
    pub cached_writes: bool,
    /// Console address (default from the config: 127.0.0.1:8080; port 0 picks a free one).
    #[arg(long)]
    pub listen: Option<String>,
    /// Set the console's admin password from this file (scripted installs); otherwise the
    /// console asks for one on first visit.
    #[arg(long)]
    pub admin_password_file: Option<PathBuf>,
    /// Cap the I/O of scrubs started by the console or the schedule (e.g. `50M` a second).
    #[arg(long)]
    pub scrub_rate_limit: Option<ByteSize>,
}
