//! `ingot sim create`: make sparse-file simulated NVMe drives. `ingot sim fault|add|list`:
//! fault drills on a running appliance's simulated drives, through its console API.

use crate::cli::{FaultCommand, SimAddArgs, SimCreateArgs, SimFaultArgs, SimListArgs};
use crate::client::Client;
use crate::error::CliError;
use crate::size::human;
use crate::table::Table;
use ingot_console::appliance::{Device, SimAddRequest, SimDrive, SimFault};

/// Create the drives and print what was made.
pub fn create(args: &SimCreateArgs) -> Result<(), CliError> {
    if args.drives == 0 {
        return Err(CliError::Usage("--drives must be at least 1".into()));
    }
    let drives = ingot_hal::sim::create_drives(&args.dir, args.drives, args.size.0, args.lba_size)?;
    let mut t = Table::new(["DRIVE", "SERIAL", "SIZE", "LBA", "FILE"]);
    for d in &drives {
        t.row([
            d.name(),
            d.meta.serial.clone(),
            human(d.meta.size_bytes),
            d.meta.lba_size.to_string(),
            d.data_path.display().to_string(),
        ]);
    }
    print!("{}", t.render());
    println!(
        "created {} simulated NVMe drive(s) in {} (sparse: no space used until written)",
        drives.len(),
        args.dir.display()
    );
    Ok(())
}

fn client(data: &std::path::Path) -> Result<Client, CliError> {
    crate::runtime::by_data(data)
        .map(Client::new)
        .ok_or_else(|| {
            CliError::Usage(format!(
                "no running appliance uses {} (fault drills act on a running `ingot up --data {}`)",
                data.display(),
                data.display()
            ))
        })
}

/// `SCT:SC`, each decimal or `0x` hex.
pub fn parse_status(s: &str) -> Result<(u8, u8), CliError> {
    let num = |t: &str| -> Option<u8> {
        let t = t.trim();
        match t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
            Some(h) => u8::from_str_radix(h, 16).ok(),
            None => t.parse().ok(),
        }
    };
    s.split_once(':')
        .and_then(|(a, b)| Some((num(a)?, num(b)?)))
        .ok_or_else(|| {
            CliError::Usage(format!(
                "--status {s:?}: expected SCT:SC, e.g. 2:0x81 (media error: unrecovered read)"
            ))
        })
}

fn render_drives(drives: &[SimDrive]) -> String {
    let mut t = Table::new([
        "DEVICE",
        "DRIVE",
        "SIZE",
        "IN-POOL",
        "REMOVED",
        "ERRORS",
        "DELAYED",
        "CORRUPTED",
    ]);
    for d in drives {
        t.row([
            d.id.clone(),
            d.name.clone(),
            human(d.size_bytes),
            if d.in_pool { "yes" } else { "no" }.into(),
            if d.removed { "yes" } else { "no" }.into(),
            d.faults.status_injected.to_string(),
            d.faults.delayed.to_string(),
            d.faults.corrupted_sectors.to_string(),
        ]);
    }
    t.render()
}

/// `ingot sim fault`
pub async fn fault(a: &SimFaultArgs) -> Result<(), CliError> {
    let c = client(&a.data)?;
    let (f, what) = match &a.fault {
        FaultCommand::Remove => (SimFault::Remove, "pulled".to_string()),
        FaultCommand::Reinsert => (SimFault::Reinsert, "reinserted".to_string()),
        FaultCommand::Fail { status, count } => {
            let (sct, sc) = parse_status(status)?;
            (
                SimFault::Fail {
                    sct,
                    sc,
                    count: *count,
                },
                format!(
                    "failing {} I/O commands with status {sct:#x}:{sc:#04x}",
                    count.map_or("all".to_string(), |n| format!("the next {n}"))
                ),
            )
        }
        FaultCommand::Delay { ms, count } => (
            SimFault::Delay {
                ms: *ms,
                count: *count,
            },
            format!(
                "delaying {} I/O commands by {ms} ms",
                count.map_or("all".to_string(), |n| format!("the next {n}"))
            ),
        ),
        FaultCommand::Corrupt { lba, blocks } => (
            SimFault::Corrupt {
                lba: *lba,
                blocks: *blocks,
            },
            format!("corrupted {blocks} block(s) from LBA {lba}"),
        ),
        FaultCommand::Clear => (SimFault::Clear, "faults cleared".to_string()),
    };
    let path = format!("/api/v1/sim/drives/{}/fault", a.drive);
    let d: SimDrive = c.post(&path, Some(&f)).await?;
    println!("{} ({}): {what}", d.id, d.name);
    Ok(())
}

/// `ingot sim add`
pub async fn add(a: &SimAddArgs) -> Result<(), CliError> {
    let c = client(&a.data)?;
    let req = SimAddRequest {
        size_bytes: a.size.map(|s| s.0),
    };
    let d: Device = c.post("/api/v1/sim/drives", Some(&req)).await?;
    if a.json {
        let text = serde_json::to_string_pretty(&d)
            .map_err(|e| CliError::Usage(format!("cannot encode JSON: {e}")))?;
        println!("{text}");
    } else {
        println!(
            "added {} ({}, {}, serial {}): not in the pool; use it with `ingot pool replace {} OLD {}`",
            d.id,
            d.location,
            human(d.capacity_bytes),
            d.serial,
            c.info().pool,
            d.id
        );
    }
    Ok(())
}

/// `ingot sim list`
pub async fn list(a: &SimListArgs) -> Result<(), CliError> {
    let c = client(&a.data)?;
    let drives: Vec<SimDrive> = c.get("/api/v1/sim/drives").await?;
    if a.json {
        let text = serde_json::to_string_pretty(&drives)
            .map_err(|e| CliError::Usage(format!("cannot encode JSON: {e}")))?;
        println!("{text}");
    } else {
        print!("{}", render_drives(&drives));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_parses_hex_and_decimal() {
        assert_eq!(parse_status("2:0x81").unwrap(), (2, 0x81));
        assert_eq!(parse_status("0:4").unwrap(), (0, 4));
        assert!(parse_status("2").is_err());
        assert!(parse_status("2:0x1ff").is_err());
        assert!(parse_status("x:1").is_err());
    }
}
