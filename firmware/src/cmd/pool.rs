//! `ingot pool create|status|import|change-passphrase`: pools on simulated drives, VFIO NVMe
//! or plain files, acting on the drives directly.

use crate::cli::{
    ApplianceSelect, DriveSelect, PoolClearArgs, PoolCreateArgs, PoolImportArgs, PoolPassArgs,
    PoolReplaceArgs, PoolStatusArgs,
};
use crate::client::Client;
use crate::cmd::remote;
use crate::config::{Config, DriveSpec};
use crate::drives::{self, OpenDrive};
use crate::error::CliError;
use crate::passphrase;
use crate::size::human;
use crate::table::Table;
use ingot_hal::blockdev::BlockDevice;
use ingot_pool::engine::DeviceState;
use ingot_pool::{ImportOptions, Pool, PoolCompression, PoolConfig, PoolLayout, PoolStatus};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Parse `stripe|mirror|raid10|raidz1|raidz2`.
pub fn parse_layout(s: &str) -> Result<PoolLayout, CliError> {
    Ok(match s {
        "stripe" => PoolLayout::Stripe,
        "mirror" => PoolLayout::Mirror,
        "raid10" => PoolLayout::Raid10,
        "raidz1" => PoolLayout::Raidz1,
        "raidz2" => PoolLayout::Raidz2,
        _ => {
            return Err(CliError::Usage(format!(
                "layout {s:?}: expected stripe, mirror, raid10, raidz1 or raidz2"
            )));
        }
    })
}

/// Parse `off`, `zstd` or `zstd:LEVEL` (1..=19).
pub fn parse_compression(s: &str) -> Result<PoolCompression, CliError> {
    let bad = || {
        CliError::Usage(format!(
            "compression {s:?}: expected off, zstd or zstd:1..19"
        ))
    };
    match s.split_once(':') {
        None if s == "off" => Ok(PoolCompression::Off),
        None if s == "zstd" => Ok(PoolCompression::Default),
        Some(("zstd", l)) => match l.parse::<i8>() {
            Ok(level) if (1..=19).contains(&level) => Ok(PoolCompression::Zstd { level }),
            _ => Err(bad()),
        },
        _ => Err(bad()),
    }
}

/// `off` or `aes-xts`: whether to encrypt.
pub fn parse_encryption(s: &str) -> Result<bool, CliError> {
    match s {
        "aes-xts" => Ok(true),
        "off" => Ok(false),
        _ => Err(CliError::Usage(format!(
            "encryption {s:?}: expected aes-xts or off"
        ))),
    }
}

/// One `--device` argument.
pub fn parse_device(s: &str) -> Result<DriveSpec, CliError> {
    if let Some(p) = s.strip_prefix("sim:") {
        return Ok(DriveSpec::Sim { path: p.into() });
    }
    if let Some(p) = s.strip_prefix("file:") {
        return Ok(DriveSpec::File { path: p.into() });
    }
    if let Some(pci) = s.strip_prefix("vfio:") {
        return Ok(DriveSpec::Vfio {
            pci: pci.into(),
            nsid: 1,
        });
    }
    let path = PathBuf::from(s);
    if path.with_extension("json").is_file() {
        Ok(DriveSpec::Sim { path })
    } else if path.exists() {
        Ok(DriveSpec::File { path })
    } else {
        Err(CliError::Usage(format!(
            "device {s:?}: no such file (use sim:PATH, file:PATH or vfio:PCI)"
        )))
    }
}

/// The drives a command names (default: the simulated drives of `./ingot-data`).
pub fn select(sel: &DriveSelect) -> Result<Vec<DriveSpec>, CliError> {
    let mut specs = Vec::new();
    if let Some(c) = &sel.config {
        specs.extend(Config::load(c)?.drives);
    }
    let mut dirs = sel.sim.clone();
    if sel.config.is_none() && sel.sim.is_empty() && sel.devices.is_empty() {
        let d = Path::new(crate::DEFAULT_DATA_DIR).join("drives");
        if !d.is_dir() {
            return Err(CliError::Usage(format!(
                "no drives named and no {} here: use --sim DIR, --device SPEC or --config FILE",
                d.display()
            )));
        }
        dirs.push(d);
    }
    for dir in dirs {
        for d in ingot_hal::sim::list_drives(&dir)? {
            specs.push(DriveSpec::Sim { path: d?.data_path });
        }
    }
    for d in &sel.devices {
        specs.push(parse_device(d)?);
    }
    if specs.is_empty() {
        return Err(CliError::Usage("no drives found".into()));
    }
    Ok(specs)
}

fn block_devices(open: &[OpenDrive]) -> Vec<Arc<dyn BlockDevice>> {
    open.iter().map(|d| d.device.clone()).collect()
}

/// Run `f` on the open drives, then shut them down whatever `f` returned.
async fn with_drives<T>(
    specs: &[DriveSpec],
    f: impl AsyncFnOnce(Vec<Arc<dyn BlockDevice>>) -> Result<T, CliError>,
) -> Result<T, CliError> {
    let open = drives::open_all(specs).await?;
    let r = f(block_devices(&open)).await;
    drives::close_all(open).await;
    r
}

fn check_name(status: &PoolStatus, want: Option<&str>) -> Result<(), CliError> {
    match want {
        Some(n) if n != status.name => Err(CliError::Usage(format!(
            "these drives hold pool {:?}, not {n:?}",
            status.name
        ))),
        _ => Ok(()),
    }
}

/// The pool's overall health word.
pub fn health(s: &PoolStatus) -> &'static str {
    if s.suspended.is_some() {
        "SUSPENDED"
    } else if s.devices.iter().any(|d| d.state != DeviceState::Online) {
        "DEGRADED"
    } else {
        "ONLINE"
    }
}

fn compression_name(c: PoolCompression) -> String {
    match c {
        PoolCompression::Off => "off".into(),
        PoolCompression::Default => "zstd:1".into(),
        PoolCompression::Zstd { level } => format!("zstd:{level}"),
    }
}

/// Human-readable status.
pub fn render_status(s: &PoolStatus) -> String {
    let mut out = String::new();
    let pct = if s.capacity_bytes > 0 {
        s.used_bytes as f64 * 100.0 / s.capacity_bytes as f64
    } else {
        0.0
    };
    out.push_str(&format!("pool:        {} (guid {})\n", s.name, s.guid));
    out.push_str(&format!("state:       {}", health(s)));
    if let Some(why) = &s.suspended {
        out.push_str(&format!(" ({why})"));
    }
    out.push('\n');
    out.push_str(&format!(
        "layout:      {} over {} devices, record size {}\n",
        s.layout.name(),
        s.devices.len(),
        human(u64::from(s.record_size))
    ));
    out.push_str(&format!(
        "encryption:  {}\n",
        encryption_state(s.encrypted, s.locked)
    ));
    out.push_str(&format!(
        "compression: {}, ratio {:.2}x\n",
        compression_name(s.compression),
        s.compression_ratio
    ));
    out.push_str(&format!(
        "capacity:    {} used of {} ({pct:.1}%), {} available\n",
        human(s.used_bytes),
        human(s.capacity_bytes),
        human(s.available_bytes)
    ));
    out.push_str(&format!(
        "txg:         {}{}\n",
        s.txg,
        if s.read_only { " (read-only)" } else { "" }
    ));
    let rc = &s.datapath.record_cache;
    if rc.limit > 0 {
        out.push_str(&format!(
            "cache:       {} of {} ({} records), {} hits, {} misses\n",
            human(rc.bytes),
            human(rc.limit),
            rc.records,
            rc.hits,
            rc.misses
        ));
    }
    out.push_str(&format!(
        "checksum errors since import: {}\n\n",
        s.checksum_errors
    ));
    let mut t = Table::new([
        "INDEX",
        "DEVICE",
        "STATE",
        "LABEL-TXG",
        "READ",
        "WRITE",
        "CKSUM",
        "GUID",
    ]);
    for d in &s.devices {
        t.row([
            d.index.to_string(),
            d.identity
                .as_ref()
                .map_or("-".to_string(), |i| i.location.clone()),
            format!("{:?}", d.state).to_uppercase(),
            d.label_txg.to_string(),
            d.errors.read.to_string(),
            d.errors.write.to_string(),
            d.errors.checksum.to_string(),
            d.guid.clone(),
        ]);
    }
    out.push_str(&t.render());
    if !s.damaged.is_empty() {
        out.push_str(&format!(
            "\nunrecoverable blocks ({}; data there reads as an I/O error):\n",
            s.damaged.len()
        ));
        for d in &s.damaged {
            match d.object {
                Some(o) => out.push_str(&format!(
                    "  object {o} offset {} (pool sector {})\n",
                    d.offset, d.addr
                )),
                None => out.push_str(&format!(
                    "  pool sector {} (object unknown: metadata or found by a keyless scrub)\n",
                    d.addr
                )),
            }
        }
    }
    out
}

fn print_status(s: &PoolStatus, json: bool) -> Result<(), CliError> {
    if json {
        let text = serde_json::to_string_pretty(s)
            .map_err(|e| CliError::Usage(format!("cannot encode JSON: {e}")))?;
        println!("{text}");
    } else {
        print!("{}", render_status(s));
    }
    Ok(())
}

/// `ingot pool create`
pub async fn create(a: &PoolCreateArgs) -> Result<(), CliError> {
    let specs = select(&a.drives)?;
    let mut cfg = PoolConfig::new(a.name.clone(), parse_layout(&a.layout)?);
    cfg.compression = parse_compression(&a.compression)?;
    cfg.record_size = u32::try_from(a.record_size.0)
        .map_err(|_| CliError::Usage("record size too large".into()))?;
    if parse_encryption(&a.encryption)? {
        cfg.passphrase = Some(passphrase::obtain(
            a.passphrase_file.as_deref(),
            "New pool passphrase",
            true,
        )?);
    }
    with_drives(&specs, async |devs| {
        let pool = Pool::create(devs, cfg).await?;
        let st = pool.status();
        pool.export().await?;
        print!("{}", render_status(&st));
        println!("created pool {} on {} drive(s)", st.name, st.devices.len());
        Ok(())
    })
    .await
}

fn explicit(sel: &DriveSelect) -> bool {
    sel.config.is_some() || !sel.sim.is_empty() || !sel.devices.is_empty()
}

/// The running appliance a command is for, unless drives are named explicitly (then it
/// acts on them directly).
pub fn appliance(
    name: Option<&str>,
    app: &ApplianceSelect,
    drives: Option<&DriveSelect>,
) -> Option<Client> {
    if app.data.is_none() && drives.is_some_and(explicit) {
        return None;
    }
    crate::runtime::find(name, app.data.as_deref()).map(Client::new)
}

/// An error for `--data DIR` naming no running appliance.
fn no_appliance(app: &ApplianceSelect) -> Result<(), CliError> {
    match &app.data {
        Some(d) => Err(CliError::Usage(format!(
            "no running appliance uses {} (start it with `ingot up --data {}`)",
            d.display(),
            d.display()
        ))),
        None => Ok(()),
    }
}

/// `ingot pool status`
pub async fn status(a: &PoolStatusArgs) -> Result<(), CliError> {
    if let Some(c) = appliance(a.name.as_deref(), &a.appliance, Some(&a.drives)) {
        return remote::status(&c, a.json).await;
    }
    no_appliance(&a.appliance)?;
    let specs = select(&a.drives)?;
    let passphrase = match &a.passphrase_file {
        Some(f) => Some(passphrase::obtain(Some(f), "Pool passphrase", false)?),
        None => None,
    };
    with_drives(&specs, async |devs| {
        let opts = ImportOptions {
            passphrase,
            read_only: true,
            ..ImportOptions::default()
        };
        let pool = crate::cmd::up::import_members(devs, &opts).await?;
        let st = pool.status();
        pool.export().await?;
        check_name(&st, a.name.as_deref())?;
        print_status(&st, a.json)
    })
    .await
}

/// Read the labels to learn whether the pool on `specs` is encrypted, without importing it.
async fn is_encrypted(devs: &[Arc<dyn BlockDevice>]) -> Result<bool, CliError> {
    let pool = Pool::import(
        devs.to_vec(),
        ImportOptions {
            passphrase: None,
            read_only: true,
            ..ImportOptions::default()
        },
    )
    .await?;
    let enc = pool.status().encrypted;
    pool.export().await?;
    Ok(enc)
}

/// `ingot pool import`
pub async fn import(a: &PoolImportArgs) -> Result<(), CliError> {
    let specs = select(&a.drives)?;
    with_drives(&specs, async |devs| {
        let passphrase = if !a.locked && is_encrypted(&devs).await? {
            Some(passphrase::obtain(
                a.passphrase_file.as_deref(),
                "Pool passphrase",
                false,
            )?)
        } else {
            None
        };
        let pool = Pool::import(
            devs,
            ImportOptions {
                passphrase,
                read_only: a.locked,
                ..ImportOptions::default()
            },
        )
        .await?;
        let st = pool.status();
        check_name(&st, a.name.as_deref())?;
        let report = pool.verify_all().await?;
        pool.export().await?;
        print_status(&st, a.json)?;
        if !a.json {
            println!(
                "verified the whole tree at txg {}: {} nodes, {} extents, {} checked, {} errors",
                report.txg,
                report.nodes,
                report.extents,
                human(report.bytes),
                report.errors.len()
            );
            for e in &report.errors {
                println!("  error: {e:?}");
            }
        }
        Ok(())
    })
    .await
}

/// `ingot pool change-passphrase`
pub async fn change_passphrase(a: &PoolPassArgs) -> Result<(), CliError> {
    let specs = select(&a.drives)?;
    let old = passphrase::obtain(a.passphrase_file.as_deref(), "Current passphrase", false)?;
    let new = passphrase::obtain(a.new_passphrase_file.as_deref(), "New passphrase", true)?;
    with_drives(&specs, async |devs| {
        let pool = Pool::import(
            devs,
            ImportOptions {
                passphrase: Some(old.clone()),
                ..ImportOptions::default()
            },
        )
        .await?;
        check_name(&pool.status(), a.name.as_deref())?;
        pool.change_passphrase(&old, &new).await?;
        let name = pool.status().name;
        pool.export().await?;
        println!("passphrase of pool {name} changed (key re-wrapped; no data rewritten)");
        Ok(())
    })
    .await
}

/// `ingot pool clear`: through the appliance holding the pool. Error counters live in the
/// running pool (they start at zero on every import), so with no appliance there is
/// nothing to clear.
pub async fn clear(a: &PoolClearArgs) -> Result<(), CliError> {
    match appliance(a.name.as_deref(), &a.appliance, None) {
        Some(c) => remote::clear(&c, a.json).await,
        None => {
            no_appliance(&a.appliance)?;
            Err(CliError::Usage(format!(
                "no running appliance holds pool {}: error counters are kept by a running \
                 pool and start at zero on every import, so there is nothing to clear",
                a.name.as_deref().unwrap_or("(unnamed)")
            )))
        }
    }
}

/// `ingot pool replace`
pub async fn replace(a: &PoolReplaceArgs) -> Result<(), CliError> {
    if let Some(c) = appliance(Some(&a.name), &a.appliance, Some(&a.drives)) {
        return remote::replace(&c, &a.old, &a.new, a.wait, a.json).await;
    }
    no_appliance(&a.appliance)?;
    crate::cmd::resilver::replace_direct(a).await
}

/// The `encryption:` line of a status report.
pub(crate) fn encryption_state(encrypted: bool, locked: bool) -> &'static str {
    match (encrypted, locked) {
        (false, _) => "off",
        (true, false) => "aes-xts, unlocked",
        (true, true) => "aes-xts, LOCKED (keyless operations only)",
    }
}
