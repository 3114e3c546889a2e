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
