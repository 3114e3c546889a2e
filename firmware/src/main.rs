//! `ingot`: the Ingot NAS appliance firmware binary. `ingot up` runs the appliance; the other
//! subcommands administer drives and pools.

#![forbid(unsafe_code)]

mod appliance;
mod cli;
mod client;
mod cmd;
mod config;
mod drives;
mod error;
mod events;
mod metered;
mod passphrase;
mod runtime;
mod size;
mod table;
mod vfio;

use clap::Parser;
use cli::{Cli, Command, PoolCommand, SimCommand};
use error::CliError;
use std::process::ExitCode;

/// Where `ingot up` keeps its drives, state and mountpoint unless `--data` says otherwise.
pub const DEFAULT_DATA_DIR: &str = "ingot-data";

fn init_logging(cli: &Cli) {
    let default = if matches!(cli.command, Command::Up(_)) {
        "info"
    } else {
        "warn"
    };
    let wanted = cli.log.as_deref().unwrap_or(default);
    let filter = tracing_subscriber::EnvFilter::try_new(wanted).unwrap_or_else(|e| {
        eprintln!("ingot: warning: bad --log filter {wanted:?} ({e}); using {default:?}");
        tracing_subscriber::EnvFilter::new(default)
    });
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if cli.log_json {
        builder.json().init();
    } else {
        builder.init();
    }
}

async fn run(cli: Cli) -> Result<(), CliError> {
    match &cli.command {
        Command::Sim(SimCommand::Create(a)) => cmd::sim::create(a),
        Command::Sim(SimCommand::Fault(a)) => cmd::sim::fault(a).await,
        Command::Sim(SimCommand::Add(a)) => cmd::sim::add(a).await,
        Command::Sim(SimCommand::List(a)) => cmd::sim::list(a).await,
        Command::Devices(a) => cmd::devices::run(a).await,
        Command::Up(a) => cmd::up::run(a).await,
        Command::Pool(PoolCommand::Create(a)) => cmd::pool::create(a).await,
        Command::Pool(PoolCommand::Status(a)) => cmd::pool::status(a).await,
        Command::Pool(PoolCommand::Import(a)) => cmd::pool::import(a).await,
        Command::Pool(PoolCommand::ChangePassphrase(a)) => cmd::pool::change_passphrase(a).await,
        Command::Pool(PoolCommand::Scrub(a)) => cmd::scrub::run(a).await,
        Command::Pool(PoolCommand::Replace(a)) => cmd::pool::replace(a).await,
        Command::Pool(PoolCommand::Clear(a)) => cmd::pool::clear(a).await,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(&cli);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("ingot: error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let top = e.to_string();
            eprintln!("ingot: error: {top}");
            let mut source = std::error::Error::source(&e);
            while let Some(s) = source {
                // Most errors already quote their cause; print only what is new.
                let text = s.to_string();
                if !top.contains(&text) {
                    eprintln!("  caused by: {text}");
                }
                source = s.source();
            }
            ExitCode::FAILURE
        }
    }
}
