//! `ingot up`: run the appliance. On first run with no config it makes the embedded default
//! (four simulated NVMe drives under the data directory, a raidz1 pool with zstd and AES-XTS)
//! and writes `DATA/ingot.toml`; later runs import and unlock the same pool. The file system is
//! mounted through FUSE until SIGINT/SIGTERM, then synced, unmounted, and the pool exported.

use crate::appliance::{Drive, Live, Paths};
use crate::cli::UpArgs;
use crate::cmd::pool::{parse_compression, parse_encryption, parse_layout, render_status};
use crate::config::{Config, DriveSpec};
use crate::drives::{self, OpenDrive};
use crate::error::CliError;
use crate::passphrase;
use crate::runtime::{self, Registration, RunInfo};
use ingot_console::ConsoleConfig;
use ingot_console::appliance::{EventData, Severity};
use ingot_fs::{Fs, FsOptions};
use ingot_hal::blockdev::BlockDevice;
use ingot_pool::engine::PoolError;
use ingot_pool::store::ObjectStore;
use ingot_pool::{ImportOptions, Pool, PoolConfig, Tunables};
use std::path::{Path, PathBuf};
use std::sync::Arc;

const CONFIG_HEADER: &str = "# Ingot appliance configuration, written by `ingot up` on first run.\n\
# Drive kinds: sim (simulated NVMe over a sparse file), vfio (pci = \"0000:00:04.0\"), file.\n\n";

/// The data directory, made and made absolute.
fn data_dir(a: &UpArgs) -> Result<PathBuf, CliError> {
    std::fs::create_dir_all(&a.data)
        .map_err(CliError::io(format!("cannot create {}", a.data.display())))?;
    std::fs::canonicalize(&a.data)
        .map_err(CliError::io(format!("cannot resolve {}", a.data.display())))
}

/// Load the config (explicit, `DATA/ingot.toml`, or the embedded default, which is then
/// written there along with its simulated drives).
fn config(a: &UpArgs, data: &Path) -> Result<Config, CliError> {
    if let Some(c) = &a.config {
        return Ok(Config::load(c)?);
    }
    let file = data.join("ingot.toml");
    if file.is_file() {
        return Ok(Config::load(&file)?);
    }
    let cfg = Config::embedded_default(data);
    let drive_dir = data.join("drives");
    let existing = if drive_dir.is_dir() {
        ingot_hal::sim::list_drives(&drive_dir)?.len()
    } else {
        0
    };
    if existing == 0 {
        let made = ingot_hal::sim::create_drives(&drive_dir, 4, a.drive_size.0, 4096)?;
        println!(
            "ingot up: created {} simulated NVMe drives of {} in {}",
            made.len(),
            a.drive_size,
            drive_dir.display()
        );
    }
    let text = toml::to_string(&cfg)
        .map_err(|e| CliError::Usage(format!("cannot encode the default config: {e}")))?;
    std::fs::write(&file, format!("{CONFIG_HEADER}{text}"))
        .map_err(CliError::io(format!("cannot write {}", file.display())))?;
    println!(
        "ingot up: wrote the embedded default config to {}",
        file.display()
    );
    Ok(cfg)
}

/// The config file in use (where hot-added drives are recorded).
fn config_path(a: &UpArgs, data: &Path) -> PathBuf {
    a.config.clone().unwrap_or_else(|| data.join("ingot.toml"))
}

/// Whether a device carries no Ingot label copy at all (a fresh drive).
async fn blank(d: &dyn BlockDevice) -> bool {
    Pool::read_labels(d)
        .await
        .iter()
        .all(|copy| matches!(copy, Err(PoolError::NotAPool { .. })))
}

/// Whether no device carries any Ingot label copy at all (fresh drives). Any other state,
/// including damage, is for import to judge: a pool is never created over one.
async fn all_blank(devs: &[Arc<dyn BlockDevice>]) -> bool {
    for d in devs {
        if !blank(d.as_ref()).await {
            return false;
        }
    }
    true
}

/// Import `devs` minus the drives that are not members: blank ones (hot-added, spares,
/// replaced ones whose labels were wiped) and ones the pool no longer counts (replaced, or
/// of another pool). Those stay with the appliance, unassigned.
pub async fn import_members(
    mut devs: Vec<Arc<dyn BlockDevice>>,
    opts: &ImportOptions,
) -> Result<Pool, CliError> {
    let mut members = Vec::new();
    for d in &devs {
        if !blank(d.as_ref()).await {
            members.push(d.clone());
        }
    }
    if members.is_empty() {
        // All blank: let import say which device holds no pool.
        members = std::mem::take(&mut devs);
    }
    loop {
        match Pool::import(members.clone(), opts.clone()).await {
            Ok(p) => return Ok(p),
            Err(PoolError::DeviceConflict { device, detail })
                if detail.contains("not a member") && members.len() > 1 =>
            {
                tracing::warn!(device = %device, %detail, "not a pool member; left unassigned");
                members.retain(|d| d.identity().location != device);
            }
            Err(PoolError::ForeignDevice { device, .. }) if members.len() > 1 => {
                tracing::warn!(device = %device, "belongs to another pool; left unassigned");
                members.retain(|d| d.identity().location != device);
            }
            Err(e) => return Err(e.into()),
        }
    }
}

async fn create_pool(
    cfg: &Config,
    a: &UpArgs,
    devs: Vec<Arc<dyn BlockDevice>>,
) -> Result<Pool, CliError> {
    let mut pc = PoolConfig::new(cfg.pool.name.clone(), parse_layout(&cfg.pool.layout)?);
    pc.compression = parse_compression(&cfg.pool.compression)?;
    pc.tunables = pool_tunables(cfg)?;
    if parse_encryption(&cfg.pool.encryption)? {
        let file = a
            .passphrase_file
            .as_ref()
            .or(cfg.pool.passphrase_file.as_ref());
        pc.passphrase = Some(passphrase::obtain(
            file.map(PathBuf::as_path),
            &format!("Passphrase for the new pool {}", cfg.pool.name),
            true,
        )?);
    }
    println!(
        "ingot up: creating pool {} ({}, {} drives, compression {}, encryption {})",
        cfg.pool.name,
        cfg.pool.layout,
        devs.len(),
        cfg.pool.compression,
        cfg.pool.encryption
    );
    Ok(Pool::create(devs, pc).await?)
}

async fn import_pool(
    cfg: &Config,
    a: &UpArgs,
    devs: Vec<Arc<dyn BlockDevice>>,
) -> Result<Pool, CliError> {
    let probe = import_members(
        devs.clone(),
        &ImportOptions {
            passphrase: None,
            read_only: true,
            ..ImportOptions::default()
        },
    )
    .await?;
    let st = probe.status();
    probe.export().await?;
    let passphrase = if st.encrypted {
        let file = a
            .passphrase_file
            .as_ref()
            .or(cfg.pool.passphrase_file.as_ref());
        Some(passphrase::obtain(
            file.map(PathBuf::as_path),
            &format!("Passphrase of pool {}", st.name),
            false,
        )?)
    } else {
        None
    };
    println!("ingot up: importing pool {} (txg {})", st.name, st.txg);
    import_members(
        devs,
        &ImportOptions {
            passphrase,
            tunables: pool_tunables(cfg)?,
            ..ImportOptions::default()
        },
    )
    .await
}

/// The pool tunables of `ingot.toml` (`[pool] cache`).
fn pool_tunables(cfg: &Config) -> Result<Tunables, CliError> {
    cfg.pool
        .tunables()
        .map_err(|e| CliError::Usage(format!("pool.cache in the config: {e}")))
}

async fn wait_for_signal() -> Result<&'static str, CliError> {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = signal(SignalKind::terminate()).map_err(CliError::io("cannot watch SIGTERM"))?;
    let mut int = signal(SignalKind::interrupt()).map_err(CliError::io("cannot watch SIGINT"))?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}

/// Give the pool its hot spares: blank drives listed under `spares`. A spare that already
/// carries labels has taken over a member before and is imported as one.
async fn add_spares(pool: &Pool, spares: &[Arc<dyn BlockDevice>]) -> Result<(), CliError> {
    for d in spares {
        if blank(d.as_ref()).await {
            pool.add_spare(d.clone()).await?;
            println!("ingot up: hot spare {} ready", d.identity().location);
        }
    }
    Ok(())
}

/// Run the appliance until a signal.
pub async fn run(a: &UpArgs) -> Result<(), CliError> {
    let data = data_dir(a)?;
    let cfg = config(a, &data)?;
    let mountpoint = a
        .mountpoint
        .clone()
        .or(cfg.export.mountpoint.clone())
        .unwrap_or_else(|| data.join("mnt"));
    // A killed previous run leaves a dead FUSE mount (ENOTCONN): detach it first.
    if ingot_export::clear_stale_mount(&mountpoint)
        .map_err(|e| CliError::Usage(format!("stale mount: {e}")))?
    {
        println!(
            "ingot up: cleared a stale mount at {} left by a previous run",
            mountpoint.display()
        );
    }
    std::fs::create_dir_all(&mountpoint).map_err(CliError::io(format!(
        "cannot create {}",
        mountpoint.display()
    )))?;
    let specs: Vec<DriveSpec> = cfg.drives.iter().chain(&cfg.spares).cloned().collect();
    let open = drives::open_all(&specs).await?;
    let result = serve(&cfg, a, &data, &open, &mountpoint).await;
    drives::close_all(open).await;
    result
}

async fn serve(
    cfg: &Config,
    a: &UpArgs,
    data: &Path,
    open: &[OpenDrive],
    mountpoint: &Path,
) -> Result<(), CliError> {
    let specs = cfg.drives.iter().chain(&cfg.spares);
    let drives: Vec<Drive> = open
        .iter()
        .zip(specs)
        .enumerate()
        .map(|(i, (d, spec))| Drive::new(format!("nvme{i}"), spec.clone(), d))
        .collect();
    let devs: Vec<Arc<dyn BlockDevice>> = drives
        .iter()
        .map(|d| d.device() as Arc<dyn BlockDevice>)
        .collect();
    let (pool_devs, spare_devs) = devs.split_at(cfg.drives.len());
    let pool = if all_blank(pool_devs).await {
        create_pool(cfg, a, pool_devs.to_vec()).await?
    } else {
        import_pool(cfg, a, devs.clone()).await?
    };
    add_spares(&pool, spare_devs).await?;
    let pool = Arc::new(pool);
    print!("{}", render_status(&pool.status()));
    let store: Arc<dyn ObjectStore> = pool.clone();
    let fs = Arc::new(
        Fs::mount(store, FsOptions::default())
            .await
            .map_err(|e| CliError::Usage(format!("cannot mount the file system: {e}")))?,
    );
    let opts = ingot_export::MountOptions {
        fsname: format!("ingot:{}", cfg.pool.name),
        writeback_cache: a.writeback_cache || cfg.export.writeback_cache,
        direct_writes: !(a.cached_writes || cfg.export.cached_writes),
        runtime: Some(tokio::runtime::Handle::current()),
        ..ingot_export::MountOptions::default()
    };
    let handle = ingot_export::mount(fs, mountpoint, &opts)
        .map_err(|e| CliError::Usage(format!("cannot export the file system: {e}")))?;
    println!("ingot up: file system mounted at {}", mountpoint.display());
    let txg_ms = u64::try_from(Tunables::default().txg_interval.as_millis()).unwrap_or(5000);
    let live = Arc::new(
        Live::new(
            drives,
            pool,
            Some(handle),
            mountpoint.to_path_buf(),
            opts,
            txg_ms,
            Paths {
                config: Some(config_path(a, data)).filter(|p| p.is_file()),
                sim_dir: data.join("drives"),
                schedule_file: Some(data.join("scrub-schedule.json")),
                txg_interval_file: Some(data.join("txg-interval-ms")),
            },
        )
        .with_pool_tunables(pool_tunables(cfg)?),
    );
    live.set_scrub_rate_limit(a.scrub_rate_limit.map(|r| r.0));
    live.start_monitor();
    live.events.emit(
        Severity::Info,
        format!(
            "appliance up: pool {} mounted at {}",
            cfg.pool.name,
            mountpoint.display()
        ),
        EventData::StateChange {
            subject: "appliance".into(),
            device: None,
            state: "up".into(),
        },
    );

    // The console.
    let listen = a
        .listen
        .clone()
        .unwrap_or_else(|| cfg.console.listen.clone());
    let listener = tokio::net::TcpListener::bind(&listen)
        .await
        .map_err(CliError::io(format!(
            "cannot listen on {listen} for the console"
        )))?;
    let addr = listener
        .local_addr()
        .map_err(CliError::io("console address"))?;
    let mut ccfg = ConsoleConfig::new(data.join("console-state.json"));
    if let Some(f) = &a.admin_password_file {
        let pw = passphrase::obtain(Some(f), "Admin password", false)?;
        ccfg.admin_password_hash = Some(
            ingot_console::hash_password(&pw)
                .map_err(|e| CliError::Usage(format!("cannot hash the admin password: {e}")))?,
        );
    }
    let (router, auth) = ingot_console::try_router_with_auth(live.clone(), ccfg)
        .map_err(|e| CliError::Usage(format!("console: {e}")))?;
    // The local CLI's token: minted through the console's token mechanism, replacing the
    // one a killed previous run may have left.
    for t in auth.tokens() {
        if t.name == runtime::LOCAL_TOKEN_NAME {
            let _ = auth.delete_token(&t.id);
        }
    }
    // Without a registration the appliance still runs; the CLI then cannot find it.
    let registration = match auth.create_token(runtime::LOCAL_TOKEN_NAME) {
        Ok((info, token)) => match Registration::publish(&RunInfo {
            pid: std::process::id(),
            pool: cfg.pool.name.clone(),
            url: format!("http://{addr}"),
            data: data.to_path_buf(),
            token,
        }) {
            Ok(r) => Some((r, info.id)),
            Err(e) => {
                tracing::warn!(error = %e, "cannot register the appliance in DATA/run: \
                    the pool commands will not find it");
                let _ = auth.delete_token(&info.id);
                None
            }
        },
        Err(e) => {
            tracing::warn!(error = %e, "cannot create the local CLI token: the pool commands \
                will not find this appliance");
            None
        }
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(ingot_console::serve(listener, router, async {
        let _ = stop_rx.await;
    }));
    println!("ingot up: console at http://{addr}/");
    println!(
        "ingot up: running; stop with Ctrl-C or SIGTERM (data is synced and the pool exported)"
    );

    let sig = wait_for_signal().await?;
    println!("ingot up: {sig}: unmounting and exporting the pool");
    if let Some((reg, token_id)) = registration {
        reg.remove();
        if let Err(e) = auth.delete_token(&token_id) {
            tracing::warn!(error = %e, "cannot delete the CLI token");
        }
    }
    let _ = stop_tx.send(());
    match server.await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "console server failed"),
        Err(e) => tracing::error!(error = %e, "console task failed"),
    }
    let down = live.shutdown().await;
    live.close_drives().await;
    down.map_err(|e| CliError::Usage(format!("shutdown: {e}")))?;
    println!("ingot up: pool exported, drives shut down cleanly");
    Ok(())
}
